"""The Slicer module's review logic (CXRXAILib.review) on real Slicer code: Kitware's slicer-core wheel, which
is Slicer's MRML and module logics without the application. Our DICOM results of a sample radiograph and of
the real radiograph in resources, made by the shipped default model, are read as the module reads them and
drawn into a real MRML scene; the geometry, segments, colours, heat-map values, CTR lines and outlines are
checked against the DICOM files and the explanation's own `heatmaps.npz`.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import slicer
import vtk
from CXRXAILib import matching, review
from CXRXAILib.catalogue import RadiographResults
from CXRXAILib.display import colour_table
from pydicom import dcmread

from cxrxai.cardiothoracic import cardiothoracic_ratio
from cxrxai.dicom.result_objects import write_dicom_results
from cxrxai.explain import Explainer
from cxrxai.explanation import load_heatmaps
from cxrxai.io import read_radiograph
from cxrxai.model.layout import DEFAULT_BUNDLE
from tests import slicer_host

ROOT = Path(__file__).resolve().parent.parent
RADIOGRAPHS = {
    "sample": ROOT / "resources" / "samples" / "sample-2.dcm",
    "real": ROOT / "resources" / "real" / "pa-chest-wg04-rg1.dcm",
}
VIEWS = ("Red", "CXRXAICompare1", "CXRXAICompare2", "CXRXAICompare3")


@pytest.fixture(scope="session")
def default_explainer() -> Explainer:
    return Explainer.from_bundle(DEFAULT_BUNDLE)


@pytest.fixture(scope="module", params=sorted(RADIOGRAPHS))
def study(request, default_explainer, tmp_path_factory):
    """(radiograph path, explanation folder with heatmaps.npz, the module's RadiographResults) of one
    radiograph, its DICOM results written as the node writes them."""
    path = RADIOGRAPHS[request.param]
    folder = tmp_path_factory.mktemp(f"slicer-{request.param}")
    radiograph = read_radiograph(path)
    explanation = default_explainer.explain(radiograph, methods=("gradcam",))
    explanation.save(folder)
    write_dicom_results(explanation, radiograph.dataset, radiograph.pixels, folder / "dicom", layer_maps=True)
    (result_set,) = matching.results_for(
        str(radiograph.dataset.SOPInstanceUID), matching.read_headers([folder / "dicom", path])
    )
    return path, folder, matching.load(result_set)


@pytest.fixture
def scene():
    """A scene prepared as Slicer's application prepares it, with the slice views' composite nodes."""
    scene, logics = slicer_host.prepared_scene()
    for name in VIEWS:
        scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode").SetLayoutName(name)
    yield scene
    for logic in logics:
        logic.SetMRMLScene(None)
    scene.Clear(True)


def _matrix(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def _composite(scene, view):
    nodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    return next(n for n in (nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems()))
                if n.GetLayoutName() == view)  # fmt: skip


def test_the_radiograph_volume_lies_where_its_dicom_header_puts_it(study, scene):
    """IJK to RAS against the header: pixel (row r, column c) at Image Position + c x column spacing along the
    row direction + r x row spacing along the column direction (LPS, then RAS), 1 mm where the header
    gives no spacing (the real radiograph has none)."""
    path, _, results = study
    header = dcmread(path, stop_before_pixels=True)
    volume = review.ReviewLogic(scene).radiograph_volume(str(path))
    spacing = header.get("PixelSpacing") or header.get("ImagerPixelSpacing") or (1.0, 1.0)
    orientation = np.array(header.get("ImageOrientationPatient") or (1, 0, 0, 0, 1, 0), float)
    origin = np.array(header.get("ImagePositionPatient") or (0, 0, 0), float)
    for row, column in ((0, 0), (10, 3), (int(header.Rows) - 1, int(header.Columns) - 1)):
        lps = (
            origin + column * float(spacing[1]) * orientation[:3] + row * float(spacing[0]) * orientation[3:]
        )
        expected = lps * np.array([-1, -1, 1])
        np.testing.assert_allclose((_matrix(volume) @ [column, row, 0, 1])[:3], expected, atol=1e-9)
    np.testing.assert_array_equal(
        slicer.util.arrayFromVolume(volume)[0], dcmread(path).pixel_array.astype(np.float32)
    )
    assert review.instance_uid(volume) == results.source_sop_instance_uid


def test_lungs_and_heart_are_three_named_coloured_segments_equal_to_the_seg(study, scene):
    path, _, results = study
    logic = review.ReviewLogic(scene)
    volume = logic.radiograph_volume(str(path))
    node = logic.show_anatomy(results, volume)
    segmentation = node.GetSegmentation()
    segments = [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]
    assert [s.GetName() for s in segments] == ["Right Lung", "Left Lung", "Heart"]
    for segment in segments:
        np.testing.assert_allclose(segment.GetColor(), review.ANATOMY_COLOURS[segment.GetName()])
        np.testing.assert_array_equal(
            _segment_mask(node, segment.GetName(), volume), results.anatomy[segment.GetName()]
        )


def _segment_mask(node, segment_id: str, volume) -> np.ndarray:
    """A segment's binary labelmap on the radiograph's grid (its stored extent is only the segment's box)."""
    image = slicer.vtkOrientedImageData()
    node.GetBinaryLabelmapRepresentation(segment_id, image)
    rows, columns = slicer.util.arrayFromVolume(volume).shape[1:]
    mask = np.zeros((rows, columns), bool)
    x0, x1, y0, y1, _, _ = image.GetExtent()
    if x1 >= x0:
        values = vtk.util.numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
        mask[y0 : y1 + 1, x0 : x1 + 1] = values.reshape(y1 - y0 + 1, x1 - x0 + 1) > 0
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(_image_matrix(image)), _matrix(volume))
    return mask


def _image_matrix(image):
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return matrix


def test_heatmaps_are_the_explanations_maps_on_the_radiograph_with_inferno_and_a_legend(study, scene):
    """Each map the SEG carries, shown as the module shows it, equals the explanation's map in heatmaps.npz
    resampled to the radiograph (to the SEG's 8-bit fractional steps)."""
    path, folder, results = study
    logic = review.ReviewLogic(scene)
    volume = logic.radiograph_volume(str(path))
    maps, _, geometry, _ = load_heatmaps(folder / "heatmaps.npz")
    shown = 0
    for target, method, layer in results.maps:
        node = logic.show_heatmap(results, results.heatmap(target, method, layer), volume, 0.3, 0.6)
        expected = geometry.to_source(maps[f"{method}/{layer}/{target}"])
        np.testing.assert_allclose(slicer.util.arrayFromVolume(node)[0], expected, atol=1 / 255 + 2e-3)
        np.testing.assert_array_equal(_matrix(node), _matrix(volume))
        shown += 1
    assert shown >= 1
    display = node.GetDisplayNode()
    colours = display.GetColorNode()
    assert colours.GetName() == review.COLOUR_NODE and colours.GetNumberOfColors() == len(colour_table())
    rgba = [0.0] * 4
    colours.GetColor(255, rgba)
    np.testing.assert_allclose(rgba, colour_table()[255], atol=1 / 255)  # Slicer keeps 8-bit colours
    assert (display.GetLowerThreshold(), display.GetWindow(), display.GetLevel()) == (0.3, 1.0, 0.5)
    legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(node)  # the existing one, if any
    assert legend.GetTitleText() == "Relevance" and legend.GetAttribute(review.OUR_NODE_ATTRIBUTE)
    red = _composite(scene, "Red")
    assert (red.GetBackgroundVolumeID(), red.GetForegroundVolumeID()) == (volume.GetID(), node.GetID())
    assert red.GetForegroundOpacity() == pytest.approx(0.6)


def test_the_ctr_lines_measure_the_ratio_of_the_segments_shown(study, scene):
    """The lines measure the drawn masks exactly; the SR's ratio, measured on the model's grid, agrees to
    within the resampling of the masks to the radiograph."""
    path, _, results = study
    logic = review.ReviewLogic(scene)
    volume = logic.radiograph_volume(str(path))
    heart, thorax = logic.show_ctr(results, volume)
    drawn = heart.GetLineLengthWorld() / thorax.GetLineLengthWorld()
    assert drawn == pytest.approx(cardiothoracic_ratio(results.anatomy["Heart"], results.lungs()), rel=1e-9)
    assert drawn == pytest.approx(results.ctr, abs=0.01)
    assert f"CTR {results.ctr:.2f}" in heart.GetNthControlPointLabel(0)


def test_the_presentation_states_outlines_are_closed_curves_on_the_radiograph(study, scene):
    path, _, results = study
    logic = review.ReviewLogic(scene)
    volume = logic.radiograph_volume(str(path))
    assert {o.layer for o in results.outlines} == {"ANATOMY", "FINDINGS"}
    curves = logic.show_outlines(results, results.outlines, volume)
    assert [c.GetName() for c in curves] == [
        review.OUTLINE_NODE.format(label=o.label) for o in results.outlines
    ]
    heart = next(c for c, o in zip(curves, results.outlines, strict=True) if o.label == "Heart")
    # every point of the heart's outline lies within a pixel of the heart mask
    inverse = np.linalg.inv(_matrix(volume))
    rows, columns = np.nonzero(results.anatomy["Heart"])
    for index in range(heart.GetNumberOfControlPoints()):
        column, row = (inverse @ [*heart.GetNthControlPointPositionWorld(index), 1])[:2]
        assert np.min(np.hypot(rows - row, columns - column)) <= 1.5


def test_a_slider_change_after_the_layer_comparison_leaves_the_comparison_views_alone(study, scene):
    path, _, results = study
    logic = review.ReviewLogic(scene)
    volume = logic.radiograph_volume(str(path))
    finding = results.mapped_findings()[0]
    layers = results.comparison(finding, "gradcam", 3)
    compared = logic.show_comparison(
        results, [(layer, results.heatmap(finding, "gradcam", layer)) for layer in layers], volume
    )
    before = [_composite(scene, f"CXRXAICompare{i}").GetForegroundVolumeID() for i in (1, 2, 3)]
    assert before[: len(compared)] == [node.GetID() for node in compared]
    shown = logic.show_heatmap(results, results.heatmap(finding, "gradcam", layers[0]), volume, 0.5)
    assert [_composite(scene, f"CXRXAICompare{i}").GetForegroundVolumeID() for i in (1, 2, 3)] == before
    assert _composite(scene, "Red").GetForegroundVolumeID() == shown.GetID()


def test_results_are_never_drawn_over_another_radiograph(study, scene):
    path, _, results = study
    logic = review.ReviewLogic(scene)
    other = logic.radiograph_volume(
        str(RADIOGRAPHS["sample"] if path != RADIOGRAPHS["sample"] else RADIOGRAPHS["real"])
    )
    finding = results.mapped_findings()[0]
    layer = results.default_layer(finding, "gradcam")
    for draw in (
        lambda: logic.show_heatmap(results, results.heatmap(finding, "gradcam", layer), other),
        lambda: logic.show_anatomy(results, other),
        lambda: logic.show_ctr(results, other),
        lambda: logic.show_outlines(results, results.outlines, other),
    ):
        with pytest.raises(review.WrongRadiographError, match="select"):
            draw()
    other.SetAttribute(review.INSTANCE_ATTRIBUTE, "")  # a volume from a file: judged by its size
    with pytest.raises(review.WrongRadiographError, match="pixels"):
        logic.show_anatomy(results, other)


@pytest.mark.parametrize("empty", ["Right Lung", "Left Lung", "Heart"])
def test_a_structure_the_model_did_not_find_keeps_its_name_and_colour(scene, empty):
    """An empty mask once made no segment, and the next structure took its place ("Heart" on the left lung);
    an empty first mask raised OverflowError."""
    rows, columns = 40, 36
    masks = {name: np.zeros((rows, columns), bool) for name in ("Right Lung", "Left Lung", "Heart")}
    masks["Right Lung"][5:30, 3:14] = masks["Left Lung"][5:30, 22:33] = masks["Heart"][18:32, 12:24] = True
    masks[empty][:] = False
    results = RadiographResults("1.2.3", "1.2", "model 1", "", [], None, anatomy=masks)
    logic = review.ReviewLogic(scene)
    volume = logic.map_volume("radiograph", np.zeros((rows, columns), np.float32), _unit_volume(scene))
    volume.SetAttribute(review.INSTANCE_ATTRIBUTE, "1.2.3")
    node = logic.show_anatomy(results, volume)
    segmentation = node.GetSegmentation()
    for index, name in enumerate(("Right Lung", "Left Lung", "Heart")):
        segment = segmentation.GetNthSegment(index)
        assert segment.GetName() == name
        np.testing.assert_allclose(segment.GetColor(), review.ANATOMY_COLOURS[name])
        np.testing.assert_array_equal(_segment_mask(node, name, volume), masks[name])


def _unit_volume(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "unit")
    node.SetIJKToRASMatrix(vtk.vtkMatrix4x4())
    return node


def test_clearing_the_review_removes_every_node_it_made(study, scene):
    path, _, results = study
    logic = review.ReviewLogic(scene)
    volume = logic.radiograph_volume(str(path))
    finding = results.mapped_findings()[0]
    logic.show_heatmap(
        results, results.heatmap(finding, "gradcam", results.default_layer(finding, "gradcam")), volume
    )
    logic.show_anatomy(results, volume)
    logic.show_ctr(results, volume)
    logic.show_outlines(results, results.outlines, volume)
    before = scene.GetNumberOfNodes()
    logic.clear()
    names = [scene.GetNthNode(i).GetName() or "" for i in range(scene.GetNumberOfNodes())]
    assert not [name for name in names if name.startswith("CXRXAI")], names
    assert scene.GetNumberOfNodes() < before


def _database(tmp_path: Path, radiograph: Path | None, results: Path) -> slicer_host.FolderDatabase:
    folder = tmp_path / "database"
    shutil.copytree(results, folder)
    if radiograph is not None:
        shutil.copy(radiograph, folder / "radiograph.dcm")
    return slicer_host.FolderDatabase(folder)


def _plugin(monkeypatch, scene, database, base):
    shown = slicer_host.install(monkeypatch, scene, database, base)
    monkeypatch.syspath_prepend(str(ROOT / "slicer_cxrxai" / "CXRXAIDICOMPlugin"))
    return importlib.import_module("CXRXAIDICOMPlugin").CXRXAIDICOMPluginClass(), shown


@pytest.mark.parametrize("base", [slicer_host.DICOMPluginBefore512, slicer_host.DICOMPlugin512])
def test_the_dicom_browser_offers_our_sr_and_opens_it_on_its_radiograph(
    study, scene, monkeypatch, tmp_path, base
):
    """Under both behaviours of Slicer's plugin base class (5.6 to 5.10, and 5.12): our SR is offered,
    selected, above Slicer's TID 1500 plugin (0.95); loading it loads its radiograph and hands both to the
    module."""
    path, folder, results = study
    database = _database(tmp_path, path, folder / "dicom")
    plugin, shown = _plugin(monkeypatch, scene, database, base)
    file_lists = [database.filesForSeries(series) for series in database.series]
    loadables = slicer_host.loadables_from_file_lists(plugin, file_lists)
    (finding,) = [loadable for loadable in loadables if loadable.selected]
    assert finding.confidence > 0.95 and finding.name.endswith("findings and heatmaps")
    assert {loadable.cxrxaiKind for loadable in loadables} == {"findings", "maps"}
    assert slicer_host.load_loadable(plugin, finding)
    assert shown.selected_module == "CXRXAI" and shown.errors == []
    assert review.instance_uid(shown.widget.volume) == results.source_sop_instance_uid
    assert [s.sr for s in shown.widget.result_sets] == finding.files
    heat_map = next(loadable for loadable in loadables if loadable.cxrxaiKind == "maps")
    assert slicer_host.load_loadable(plugin, heat_map)  # a SEG opens the result set that lists it
    assert [s.sr for s in shown.widget.result_sets] == finding.files
    assert scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 1  # the radiograph, once


def test_results_whose_radiograph_is_not_in_the_database_open_over_nothing(
    study, scene, monkeypatch, tmp_path
):
    """The plugin once fell back to whatever volume was selected; now it says to import the radiograph."""
    _, folder, _ = study
    database = _database(tmp_path, None, folder / "dicom")
    plugin, shown = _plugin(monkeypatch, scene, database, slicer_host.DICOMPlugin512)
    loadables = slicer_host.loadables_from_file_lists(
        plugin, [database.filesForSeries(s) for s in database.series]
    )
    (finding,) = [loadable for loadable in loadables if loadable.selected]
    assert not slicer_host.load_loadable(plugin, finding)
    assert shown.widget.volume is None and shown.widget.result_sets is None
    (error,) = shown.errors
    assert "radiograph" in error and "import it" in error


# What 3D Slicer 5.12 ships in its Python besides the standard library (SuperBuild/External_python-*.cmake at
# v5.12.3: pydicom, pillow, highdicom, pyjpegls, typing_extensions, six, retrying, dicomweb-client, dcmqi,
# numpy, scipy, SimpleITK, requests and its needs, pip's packaging) and the MRML and VTK of the application.
SLICER_HIGHDICOM = "0.27.0"  # External_python-dicom-requirements.cmake at v5.12.3
SLICER_SITE = ROOT / ".venv" / "slicer-5.12"  # highdicom at that version, installed by the Makefile
SLICER_PYTHON_PACKAGES = {
    "numpy", "pydicom", "PIL", "highdicom", "jpeg_ls", "_CharLS", "typing_extensions", "six", "retrying",
    "dicomweb_client", "dcmqi", "scipy", "SimpleITK", "requests", "urllib3", "idna", "certifi",
    "charset_normalizer", "packaging", "slicer", "slicer_core", "vtk", "vtkmodules",
}  # fmt: skip


def _cmake_list(path: Path, variable: str) -> list[str]:
    block = re.search(rf"set\({variable}\n(.*?)\n\s*\)", path.read_text(), re.S)
    assert block, f"{variable} not in {path}"
    names = [
        line.strip().replace("${MODULE_NAME}", "CXRXAI") for line in block[1].splitlines() if line.strip()
    ]
    # file(GLOB X RELATIVE ... ${CMAKE_CURRENT_SOURCE_DIR}/pattern) + list(APPEND variable ${X})
    for glob, pattern in re.findall(r"file\(GLOB (\w+) RELATIVE .*?\$\{CMAKE_CURRENT_SOURCE_DIR\}/(\S+)\)",
                                    path.read_text(), re.S):  # fmt: skip
        if f"list(APPEND {variable} ${{{glob}}})" in path.read_text():
            names += sorted(str(found.relative_to(path.parent)) for found in path.parent.glob(pattern))
    return names


def _installed(folder: Path) -> Path:
    """The module's files and the core files the extension's CMakeLists install, as Slicer installs them
    (one folder on Slicer's Python path)."""
    installed = folder / "qt-scripted-modules"
    module = ROOT / "slicer_cxrxai" / "CXRXAI"
    files = [(module, name) for name in _cmake_list(module / "CMakeLists.txt", "MODULE_PYTHON_SCRIPTS")]
    files += [(ROOT, name) for name in _cmake_list(ROOT / "CMakeLists.txt", "CXRXAI_CORE_PYTHON_SCRIPTS")]
    for source, name in files:
        (installed / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, installed / name)
    return installed


def test_the_installed_extension_runs_the_model_from_its_own_files(tiny_bundle, tmp_path):
    """'Run locally' needs only the installed files of cxrxai (and PyTorch and the model packages)."""
    installed = _installed(tmp_path)
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "slicer_installed_run.py"), str(installed),
         str(RADIOGRAPHS["sample"]), str(tiny_bundle), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"code": 0, "outside": []}, run.stderr[-3000:]
    assert (tmp_path / "out" / "heatmaps.npz").is_file()


def test_the_installed_extension_reviews_a_study_from_its_own_files(study, tmp_path):
    """The module's files and the core files the extension's CMakeLists install, in a fresh interpreter that
    can import only the standard library and what Slicer 5.12's Python ships, highdicom at Slicer's version
    (the Makefile puts it in SLICER_SITE): reviewing needs nothing from a package index."""
    path, folder, results = study
    assert (SLICER_SITE / "highdicom").is_dir(), f"{SLICER_SITE} is missing: `make test` installs it"
    installed = _installed(tmp_path)
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "slicer_installed_review.py"), str(installed),
         ",".join(sorted(SLICER_PYTHON_PACKAGES)), str(folder / "dicom"), str(path), str(SLICER_SITE)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary == {
        "highdicom": SLICER_HIGHDICOM,
        "segments": 3,
        "lines": 2,
        "curves": len(results.outlines),
        "outside": [],
    }


@pytest.mark.parametrize(
    ("agree", "testing", "installed"), [(True, False, True), (False, False, False), (True, True, False)]
)
def test_a_package_is_installed_only_when_the_user_agrees(tmp_path, monkeypatch, agree, testing, installed):
    """pip_ensure returns None after installing: read as a refusal, an install once stopped silently."""
    from CXRXAILib.install import ensure_packages

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# what the local run needs\ncxrxai_test_package\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    packaging = slicer_host.Packaging(tmp_path, agree, testing)
    assert ensure_packages(packaging, requirements, ["cxrxai_test_package"]) is installed
    assert packaging.asked == (0 if testing else 1)
    assert (
        ensure_packages(packaging, requirements, ["cxrxai_test_package"]) is installed
    )  # asked again if not
