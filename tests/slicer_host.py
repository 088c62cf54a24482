"""Test doubles of the parts of the 3D Slicer application a scripted DICOM plugin meets, transcribed from
Slicer's own sources, so that our plugin's contract can be tested outside the application (which cannot
run here). Only what our plugin depends on is transcribed; each piece says where it was read.

- DICOMLib's DICOMLoadable and DICOMPlugin base class, in both behaviours the supported and earlier
  releases have: Modules/Scripted/DICOMLib/DICOMPlugin.py at v5.6.2 to v5.10.0 (`examineForImport` is
  virtual and returns []; there is no `examineFiles`) and at v5.12.0 to v5.12.3 (`examineForImport`
  calls `examineFiles(files)` for each file list; the caching is left out).
- DICOMUtils.getLoadablesFromFileLists (DICOMUtils.py, v5.8.1 to v5.12.3, l.827): `examineForImport`,
  then `examine` when that found nothing; DICOMUtils.loadLoadables (v5.8.1+): `loadSuccess =
  bool(plugin.load(loadable))`.
- The DICOM database's `seriesForStudy` / `filesForSeries` (ctkDICOMDatabase) over a folder of files.
- DICOMUtils.loadSeriesByUID: here the series' radiograph becomes a volume through CXRXAILib.review, with
  the geometry Slicer's scalar-volume loader gives it (tested in test_slicer_mrml.py).
"""

from __future__ import annotations

import sys
import types
from collections import defaultdict
from pathlib import Path

from pydicom import dcmread


class DICOMLoadable:
    """DICOMPlugin.py, all releases: the fields DICOMUtils and the DICOM browser read."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.name = "Unknown"
        self.tooltip = "No further information available"
        self.warning = ""
        self.selected = False
        self.confidence = 0.5


class DICOMPluginBefore512:
    """DICOMPlugin at v5.6.2 to v5.10.0."""

    def __init__(self) -> None:
        self.loadType = "Generic DICOM"
        self.tags: dict[str, str] = {}

    def examineForImport(self, fileList):  # "Virtual: should be overridden by the subclass"
        return []

    def examine(self, fileList):  # the older name, an alias
        return self.examineForImport(fileList)

    def load(self, loadable):
        return True


class DICOMPlugin512(DICOMPluginBefore512):
    """DICOMPlugin at v5.12.0 to v5.12.3: examineForImport examines each series' files."""

    def examineForImport(self, fileList):
        loadables = []
        for files in fileList:
            loadables += self.examineFiles(files)
        return loadables

    def examineFiles(self, files):
        return []


def loadables_from_file_lists(plugin, file_lists) -> list:
    """DICOMUtils.getLoadablesFromFileLists, for one plugin."""
    loadables = plugin.examineForImport(file_lists)
    if not loadables:
        loadables = plugin.examine(file_lists)
    return loadables


def load_loadable(plugin, loadable) -> bool:
    """DICOMUtils.loadLoadables (v5.8.1+), for one loadable."""
    loaded = plugin.load(loadable)
    loadable.loadSuccess = bool(loaded)
    return loadable.loadSuccess


class FolderDatabase:
    """The DICOM database's study and series lookups over the files of a folder."""

    def __init__(self, folder: Path) -> None:
        self.series: dict[str, list[str]] = defaultdict(list)
        self.studies: dict[str, set[str]] = defaultdict(set)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            header = dcmread(path, stop_before_pixels=True)
            self.series[str(header.SeriesInstanceUID)].append(str(path))
            self.studies[str(header.StudyInstanceUID)].add(str(header.SeriesInstanceUID))

    def seriesForStudy(self, study: str) -> list[str]:
        return sorted(self.studies.get(study, ()))

    def filesForSeries(self, series: str) -> list[str]:
        return list(self.series.get(series, ()))


class ModuleWidget:
    """What the plugin hands the CXRXAI module's widget: the radiograph and the result sets."""

    def __init__(self) -> None:
        self.volume = None
        self.result_sets = None
        self.supported = True  # the module runs on this Slicer
        self.ui = types.SimpleNamespace(
            inputVolumeSelector=types.SimpleNamespace(setCurrentNode=self._select)
        )

    def _select(self, volume) -> None:
        self.volume = volume

    def setResultSets(self, sets) -> None:
        self.result_sets = sets


_CONVERTER_RULES: list = []
OURS = ("cxrxai", "CXRXAILib")


def ours_from_elsewhere(installed: str) -> list[str]:
    """Our modules this process imported from outside the `installed` folder (the installed-extension
    scripts print it: it must be empty)."""
    return sorted(
        module.__name__
        for module in list(sys.modules.values())
        if module.__name__.split(".")[0] in OURS
        and not (getattr(module, "__file__", "") or "").startswith(installed)
    )


def prepared_scene():
    """A scene as Slicer's application prepares it for this module: the segmentation converter rules
    registered (qSlicerSegmentationsModule::setup), the application logic (selection, interaction and
    view nodes) and the colour, segmentation and markups module logics attached (they register their node
    classes, the colour legend's among them). Returns (scene, the logics to detach afterwards)."""
    import slicer

    if not _CONVERTER_RULES:  # one factory per process, as in Slicer
        _CONVERTER_RULES.extend(
            [
                slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule(),
                slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule(),
            ]
        )
        for rule in _CONVERTER_RULES:
            slicer.vtkSegmentationConverterFactory.GetInstance().RegisterConverterRule(rule)
    scene = slicer.vtkMRMLScene()
    application = slicer.vtkSlicerApplicationLogic()
    application.SetMRMLScene(scene)
    logics = [
        slicer.vtkSlicerColorLogic(),
        slicer.vtkSlicerSegmentationsModuleLogic(),
        slicer.vtkSlicerMarkupsLogic(),
    ]
    for logic in logics:
        logic.SetMRMLApplicationLogic(application)
        logic.SetMRMLScene(scene)
    return scene, [*logics, application]


def install(monkeypatch, scene, database: FolderDatabase, base: type) -> types.SimpleNamespace:
    """Put the application's pieces where the plugin module imports them from, with `base` as DICOMLib's
    DICOMPlugin; returns what the test inspects (errors shown, the module widget)."""
    import slicer
    from CXRXAILib.review import ReviewLogic

    shown = types.SimpleNamespace(errors=[], widget=ModuleWidget(), selected_module=None)

    def load_series(uids):
        (uid,) = uids
        volume = ReviewLogic(scene).radiograph_volume(database.filesForSeries(uid)[0], name=f"series {uid}")
        return [volume.GetID()]

    dicomlib = types.ModuleType("DICOMLib")
    dicomlib.DICOMLoadable = DICOMLoadable
    dicomlib.DICOMPlugin = base
    dicomlib.DICOMUtils = types.SimpleNamespace(loadSeriesByUID=load_series)
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    scripted.ScriptedLoadableModule = type(
        "ScriptedLoadableModule", (), {"__init__": lambda self, parent: None}
    )
    monkeypatch.setitem(sys.modules, "DICOMLib", dicomlib)
    monkeypatch.setitem(sys.modules, "slicer.i18n", i18n)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    monkeypatch.setattr(slicer, "dicomDatabase", database, raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(CXRXAIWidget=shown.widget), raising=False)
    monkeypatch.setattr(slicer.util, "errorDisplay", shown.errors.append, raising=False)
    monkeypatch.setattr(slicer.util, "selectModule", lambda name: setattr(shown, "selected_module", name))
    monkeypatch.delitem(sys.modules, "CXRXAIDICOMPlugin", raising=False)
    return shown


class Packaging:
    """slicer.packaging's pip_ensure and load_requirements (Base/Python/slicer/packaging.py, v5.12.3):
    pip_ensure returns None when nothing is missing, in testing mode (without installing) and after
    installing; it raises RuntimeError("User declined package installation") when the user says no. Here
    "installing" writes an empty module of each requirement's name into `site`."""

    def __init__(self, site: Path, agree: bool, testing: bool = False) -> None:
        self.site, self.agree, self.testing = site, agree, testing
        self.asked = 0

    @staticmethod
    def load_requirements(path: str) -> list[str]:
        lines = Path(path).read_text().splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    def pip_ensure(self, requirements, requester=None):
        missing = [r for r in requirements if not (self.site / f"{r}.py").exists()]
        if not missing or self.testing:
            return None
        self.asked += 1
        if not self.agree:
            raise RuntimeError("User declined package installation")
        for requirement in missing:
            (self.site / f"{requirement}.py").write_text("")
        return None
