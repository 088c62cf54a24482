"""DICOM plugin: Slicer's DICOM browser opens our findings SR (and our SEGs) with the CXRXAI module.

Registered by this hidden module, as Slicer's own plugins are. It claims only CXR-XAI objects, with a
higher confidence than the generic TID 1500 and SEG plugins (CXRXAILib.plugin), because the SEG loader
goes through dcmqi, which cannot read a SEG of a projection radiograph (dcmqi issue 319): our plugin
reads our SEGs itself and puts the maps on the grid of the radiograph volume Slicer loads for the CR / DX.

Slicer's DICOM browser calls `examineForImport(fileLists)` in every release (DICOMUtils.
getLoadablesFromFileLists); only from 5.12 does the base class turn that into `examineFiles(files)` per
series, so the plugin implements `examineForImport` itself.
"""

import slicer
from DICOMLib import DICOMLoadable, DICOMPlugin
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModule


class CXRXAIDICOMPluginClass(DICOMPlugin):
    def __init__(self):
        super().__init__()
        self.loadType = _("CXR-XAI results")
        self.tags["Manufacturer"] = "0008,0070"
        self.tags["Modality"] = "0008,0060"
        self.tags["SOPInstanceUID"] = "0008,0018"

    def examineForImport(self, fileLists):
        """One loadable per CXR-XAI SR or SEG among the series' file lists."""
        from CXRXAILib.plugin import examine_file_lists

        return [self._loadable(claim) for claim in examine_file_lists(fileLists)]

    def examineFiles(self, files):
        """Slicer 5.12's per-series entry point (its base class's examineForImport calls it)."""
        return self.examineForImport([files])

    def _loadable(self, claim):
        loadable = DICOMLoadable()
        loadable.files = [claim.file]
        loadable.name = claim.name
        loadable.tooltip = _("Findings and heatmaps in the CXR-XAI module")
        loadable.selected = claim.kind == "findings"
        loadable.confidence = claim.confidence
        loadable.cxrxaiKind = claim.kind
        return loadable

    def load(self, loadable):
        """Load the radiograph the results are for, show the results on it in the CXRXAI module, and
        return the radiograph's volume; never show them over another volume."""
        from CXRXAILib.matching import read_headers
        from CXRXAILib.plugin import NotLoadable, what_to_open
        from DICOMLib import DICOMUtils

        database = slicer.dicomDatabase
        study = str(read_headers(loadable.files)[0].StudyInstanceUID)
        files = [f for series in database.seriesForStudy(study) for f in database.filesForSeries(series)]
        try:
            opening = what_to_open(loadable.files, loadable.cxrxaiKind, read_headers(files))
        except NotLoadable as exc:
            slicer.util.errorDisplay(_("Cannot open these CXR-XAI results: {why}.").format(why=exc))
            return False
        volume = self._loadedRadiograph(str(opening.radiograph.SOPInstanceUID))
        if volume is None:
            nodeIds = DICOMUtils.loadSeriesByUID([str(opening.radiograph.SeriesInstanceUID)])
            volumes = [slicer.mrmlScene.GetNodeByID(i) for i in nodeIds or []]
            volume = next((v for v in volumes if v is not None and v.IsA("vtkMRMLScalarVolumeNode")), None)
        if volume is None:
            slicer.util.errorDisplay(_("The radiograph of these CXR-XAI results could not be loaded."))
            return False
        slicer.util.selectModule("CXRXAI")
        widget = slicer.modules.CXRXAIWidget
        if not getattr(widget, "supported", False):  # an older Slicer: the module says which it needs
            return False
        widget.ui.inputVolumeSelector.setCurrentNode(volume)
        widget.setResultSets([opening.result_set])
        return volume


    @staticmethod
    def _loadedRadiograph(sopInstanceUID):
        """The radiograph's volume when the scene already holds it (e.g. loaded with its whole study)."""
        volumes = slicer.mrmlScene.GetNodesByClass("vtkMRMLScalarVolumeNode")
        for index in range(volumes.GetNumberOfItems()):
            volume = volumes.GetItemAsObject(index)
            if sopInstanceUID in (volume.GetAttribute("DICOM.instanceUIDs") or "").split():
                return volume
        return None


class CXRXAIDICOMPlugin(ScriptedLoadableModule):
    """Hidden module that registers the plugin with the DICOM module."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "CXR-XAI DICOM Plugin"
        parent.categories = ["Developer Tools.DICOM Plugins"]
        parent.dependencies = ["DICOM"]
        parent.contributors = ["CXR-XAI developers"]
        parent.helpText = _(
            "Opens CXR-XAI findings SRs and heatmap SEGs from the DICOM browser with the CXR-XAI module."
        )
        parent.acknowledgementText = ""
        parent.hidden = True
        if not hasattr(slicer.modules, "dicomPlugins"):  # this module may load before the DICOM module
            slicer.modules.dicomPlugins = {}
        slicer.modules.dicomPlugins["CXRXAIDICOMPlugin"] = CXRXAIDICOMPluginClass
