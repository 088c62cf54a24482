"""The 3D Slicer extension: its plain-Python logic (CXRXAILib) on real results, and static checks of
the Slicer glue (3D Slicer itself cannot be installed here: the module's self-test runs in Slicer's ctest).

CXRXAILib is imported as Slicer imports it, from the module folder (pytest's `pythonpath` setting).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from CXRXAILib import display, local, matching, plugin, sources
from CXRXAILib.catalogue import from_explanation, read_results
from CXRXAILib.testdata import CARDIOMEGALY, write_test_study
from pydicom import dcmread

from cxrxai.dicom.result_objects import HeatmapSelection, write_dicom_results
from cxrxai.dicom.seg import read_seg
from cxrxai.dicom.sr import read_sr
from cxrxai.explain import DEFAULT_METHODS
from cxrxai.io import read_radiograph
from cxrxai.samples import chest_image, radiograph_dataset

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "slicer_cxrxai" / "CXRXAI"
PLUGIN = ROOT / "slicer_cxrxai" / "CXRXAIDICOMPlugin"
RADIOGRAPH = ROOT / "resources" / "samples" / "sample-1.dcm"
QT_WIDGETS = {"QLabel", "QPushButton", "QLineEdit", "QComboBox", "QTableWidget", "QCheckBox", "QSpinBox"}


@pytest.fixture(scope="module")
def study(explainer, tmp_path_factory):
    """A radiograph explained by the real engine, its DICOM results written as the node writes them,
    plus a second patient's radiograph and results in the same folder (which must not match)."""
    folder = tmp_path_factory.mktemp("slicer-study")
    found = {}
    for name, seed in (("mine", 3), ("other", 4)):
        dataset = radiograph_dataset(chest_image(80, 72, seed=seed), uid_seed=f"slicer-{name}")
        dataset.save_as(folder / f"{name}-radiograph.dcm", enforce_file_format=True)
        radiograph = read_radiograph(dataset)
        explanation = explainer.explain(radiograph, methods=("gradcam",))
        paths = write_dicom_results(
            explanation, dataset, radiograph.pixels, folder / name, HeatmapSelection("top-2"), layer_maps=True
        )
        found[name] = (dataset, explanation, paths)
    return folder, found


def test_results_of_a_radiograph_are_found_and_read_as_the_sr_says(study):
    folder, found = study
    dataset, explanation, paths = found["mine"]
    headers = matching.read_headers([folder])
    assert [str(h.SOPInstanceUID) for h in matching.radiographs(headers)] == sorted(
        [str(found["mine"][0].SOPInstanceUID), str(found["other"][0].SOPInstanceUID)],
        key=lambda uid: next(str(h.StudyInstanceUID) for h in headers if str(h.SOPInstanceUID) == uid),
    )
    sets = matching.results_for(str(dataset.SOPInstanceUID), headers)
    assert len(sets) == 1 and not sets[0].missing
    written = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths}
    assert {Path(p) for p in sets[0].segmentations} | {Path(p) for p in sets[0].pictures} | {
        Path(sets[0].sr)
    } == {p for p in written.values() if dcmread(p, stop_before_pixels=True).Modality in ("SR", "SEG", "OT")}
    results = matching.load(sets[0])
    truth = read_sr(dcmread(sets[0].sr))
    # the table: every finding, highest probability first, exactly the SR's numbers and decisions
    assert [row.probability for row in results.findings] == sorted(
        (f.probability for f in truth.findings), reverse=True
    )
    assert {row.name: (row.probability, row.threshold, row.present) for row in results.findings} == {
        f.name: (f.probability, f.threshold, truth.present[f.name]) for f in truth.findings
    }
    assert results.ctr == truth.ctr and results.model_hash == explanation.model["content_hash"]
    # the catalogue: the two top findings have maps, fused first by default, layers encoder -> decoder
    top = sorted(explanation.findings, key=lambda f: f.probability, reverse=True)[:2]
    assert results.mapped_findings() == [f.name for f in top]
    finding = top[0].name
    assert results.methods(finding) == ["gradcam"]
    layers = results.layers(finding, "gradcam")
    assert (
        layers[0] == "encoder1"
        and layers[-1] == "fused"
        and layers.index("bottleneck") < layers.index("decoder1")
    )
    assert results.default_layer(finding, "gradcam") == "fused"  # the tiny bundle has no evaluation
    heat_seg = next(
        read_seg(dcmread(p)) for p in sets[0].segmentations if dcmread(p).SegmentationType == "FRACTIONAL"
    )
    segment = next(s for s in heat_seg.segments if (s.finding, s.layer) == (finding, "decoder1"))
    assert np.array_equal(results.heatmap(finding, "gradcam", "decoder1"), segment.values)
    assert results.heatmap(finding, "gradcam", "decoder1").shape == (dataset.Rows, dataset.Columns)
    # anatomy and lung masking
    assert set(results.anatomy) == {"Right Lung", "Left Lung", "Heart"}
    lungs = results.lungs()  # the untrained bundle's lungs are a speck of noise, or nothing
    masked = results.heatmap(finding, "gradcam", "decoder1", lung_mask=True)
    assert masked.shape == lungs.shape and not masked[~lungs].any()  # its rescaling: test_display_maths
    # without the layer-map SEG the display layer's map comes stepped from the heat-map SEG's levels
    heat_levels = next(dcmread(p) for p in sets[0].segmentations if dcmread(p).ContentLabel == "HEATMAPS")
    anatomy_seg = next(dcmread(p) for p in sets[0].segmentations if dcmread(p).ContentLabel == "ANATOMY")
    stepped = read_results(dcmread(sets[0].sr), [anatomy_seg, heat_levels])
    assert stepped.layers(finding, "gradcam") == ["fused"]
    values = stepped.heatmap(finding, "gradcam", "fused")
    assert set(np.unique(values)) <= {0.0, np.float32(0.5), np.float32(0.7), np.float32(0.9)}
    continuous = results.heatmap(finding, "gradcam", "fused")
    quantum = 0.5 / 255 + 1e-6  # the FRACTIONAL SEG's rounding
    assert not (values >= 0.5)[continuous < 0.5 - quantum].any()
    assert (values >= 0.5)[continuous >= 0.5 + quantum].all()
    with pytest.raises(KeyError, match="no crm map"):
        results.heatmap(finding, "crm", "decoder1")


def test_a_local_run_in_its_own_process_fills_the_same_catalogue(explainer, tiny_bundle, tmp_path):
    """'Run locally' runs the model in a process of its own (run_model.py): its progress reaches the module
    and its results fill the catalogue as the in-process explanation does."""
    dataset = radiograph_dataset(chest_image(72, 64, seed=9), uid_seed="slicer-local")
    dataset.save_as(tmp_path / "cr.dcm", enforce_file_format=True)
    assert local.missing_packages() == []  # this environment has torch, MONAI and Captum
    run = local.LocalRun(sys.executable, tmp_path / "cr.dcm", tiny_bundle, tmp_path / "out")
    assert run.wait(300) == 0 and run.succeeded and (run.percent, run.stage) == (100, "done")
    results = run.results()
    assert results.source_sop_instance_uid == str(dataset.SOPInstanceUID)
    finding = results.findings[0].name
    assert results.methods(finding) == display.sorted_methods(DEFAULT_METHODS)
    assert all(m.shape == (72, 64) for m in results.maps.values())
    # Seg-Grad-CAM explains the segmentation: per structure, the heart by default
    assert results.structures() == ["Right Lung", "Left Lung", "Heart"]
    assert results.layers(finding, "seggradcam") == results.layers(finding, "seggradcam", "Heart")
    heart = results.heatmap(finding, "seggradcam", "decoder1")
    assert np.array_equal(heart, results.maps["Heart", "seggradcam", "decoder1"])
    direct = from_explanation(
        explainer.explain(read_radiograph(tmp_path / "cr.dcm"), methods=DEFAULT_METHODS)
    )
    assert [(r.name, r.probability) for r in results.findings] == [
        (r.name, r.probability) for r in direct.findings
    ]
    assert {k: v.any() for k, v in results.anatomy.items()} == {k: v.any() for k, v in direct.anatomy.items()}
    for key, values in direct.maps.items():  # heatmaps.npz keeps float16 steps of each map's maximum
        np.testing.assert_allclose(results.maps[key], values, atol=2e-3)


def test_a_local_run_is_cancelled_with_everything_it_started(tmp_path):
    run = local.LocalRun(sys.executable, RADIOGRAPH, local.default_bundle(), tmp_path / "out")
    deadline = time.monotonic() + 120
    while run.poll() and run.percent < 5 and time.monotonic() < deadline:  # until the run reports
        time.sleep(0.05)
    run.cancel()
    assert not run.poll() and run.cancelled and not run.succeeded and run.failure == "cancelled"
    assert not (tmp_path / "out" / "predictions.json").exists()
    with pytest.raises(RuntimeError, match="cancelled"):
        run.results()


def test_a_local_run_that_fails_says_why(tmp_path):
    bad = tmp_path / "not-a-radiograph.dcm"
    bad.write_bytes(b"not DICOM")
    run = local.LocalRun(sys.executable, bad, local.default_bundle(), tmp_path / "out")
    assert run.wait(300) == 1 and not run.succeeded
    assert "could not explain" in run.failure and "Traceback" not in run.failure


def test_the_viewer_opens_on_the_layer_the_model_leads_with(explainer, tmp_path):
    """Through the SEG (its first map of a finding) and from a local run alike; other methods keep theirs."""
    dataset = radiograph_dataset(chest_image(64, 60, seed=12), uid_seed="slicer-display")
    radiograph = read_radiograph(dataset)
    explanation = explainer.explain(radiograph, methods=("gradcam", "crm"))
    explanation.model["display_layers"] = {f.name: "decoder2" for f in explanation.findings}
    write_dicom_results(explanation, dataset, radiograph.pixels, tmp_path, HeatmapSelection("top-1"))
    (found,) = matching.results_for(str(dataset.SOPInstanceUID), matching.read_headers([tmp_path]))
    for results in (matching.load(found), from_explanation(explanation)):
        finding = results.mapped_findings()[0]
        assert results.default_layer(finding, "gradcam") == "decoder2"
    assert from_explanation(explanation).default_layer(finding, "crm") == "decoder1"


def test_display_maths():
    assert display.sorted_methods(["saliency", "crm", "gradcam", "seggradcam", "gradcampp"]) == [
        "gradcam", "gradcampp", "crm", "seggradcam", "saliency"
    ]  # fmt: skip
    layers = ["fused", "decoder1", "bottleneck", "encoder2", "decoder3", "encoder1", "decoder2", "encoder3"]
    path = ["encoder1", "encoder2", "encoder3", "bottleneck", "decoder3", "decoder2", "decoder1"]
    assert display.sorted_layers(layers) == [*path, "fused"]
    assert (
        display.layer_name("decoder2") == "Decoder 2" and display.layer_name("fused") == "Fused (all layers)"
    )
    assert display.comparison_layers(layers, 3) == ["encoder1", "bottleneck", "decoder1"]
    assert display.comparison_layers(layers, 10) == path
    layout = ET.fromstring(display.comparison_layout_xml(4))
    assert [v.get("singletontag") for v in layout.iter("view")] == [f"CXRXAICompare{i}" for i in range(1, 5)]
    with pytest.raises(ValueError):
        display.comparison_layout_xml(7)
    green, amber, red = (
        display.score_colour(0.0, 0.3),
        display.score_colour(0.3, 0.3),
        display.score_colour(1.0, 0.3),
    )
    assert green == (46, 160, 67) and amber == (240, 180, 0) and red == (215, 48, 39)
    assert display.score_colour(0.15, 0.3) == tuple(
        round((g + a) / 2) for g, a in zip(green, amber, strict=True)
    )
    table = display.colour_table()
    assert table.shape == (256, 4) and table[0, 3] == 0 and (table[1:, 3] == 1).all()
    assert table[-1, :3].sum() > table[1, :3].sum()  # inferno: bright for high evidence
    assert display.display_range(0.25) == (0.25, 1.0)
    with pytest.raises(ValueError):
        display.display_range(1.0)
    heat = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    lungs = np.zeros((3, 4), bool)
    lungs[:2, :2] = True
    masked = display.lung_masked(heat, lungs)
    assert (
        masked[~lungs].max() == 0
        and masked.max() == pytest.approx(1.0)
        and display.lung_masked(heat, None) is heat
    )
    volume = display.volume_array(heat)
    assert volume.shape == (1, 3, 4) and volume[0, 2, 3] == heat[2, 3]  # (K, J, I): voxel (i=3, j=2)


def test_radiograph_geometry_matches_slicer_convention():
    dataset = radiograph_dataset(chest_image(40, 30), pixel_spacing=(0.2, 0.15))
    dataset.ImagerPixelSpacing = [0.2, 0.15]
    matrix = display.ijk_to_ras(dataset)
    # voxel (i = column 10, j = row 20) of a CR without position / orientation: LPS identity, RAS flips x, y
    assert np.allclose(matrix @ [10, 20, 0, 1], [-10 * 0.15, -20 * 0.2, 0, 1])
    assert np.array_equal(display.ijk_to_ras({}), np.diag([-1.0, -1.0, 1.0, 1.0]))  # no geometry at all
    dataset.ImagePositionPatient = [5.0, -3.0, 100.0]
    dataset.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    dataset.PixelSpacing = [0.5, 0.4]
    matrix = display.ijk_to_ras(dataset)
    lps = np.array([5.0, -3.0, 100.0]) + 10 * 0.4 * np.array([0, 1, 0]) + 20 * 0.5 * np.array([0, 0, -1])
    assert np.allclose(matrix @ [10, 20, 0, 1], [-lps[0], -lps[1], lps[2], 1])


def test_self_test_study_and_the_dicom_plugin_claims(tmp_path, study):
    paths = write_test_study(tmp_path)
    sets = sources.from_folder(tmp_path)
    assert len(sets) == 1 and sets[0].source_sop_instance_uid == str(
        dcmread(paths["radiograph"]).SOPInstanceUID
    )
    results = matching.load(sets[0])
    assert results.findings[0].name == "Cardiomegaly" and results.findings[0].probability == CARDIOMEGALY
    assert results.layers("Cardiomegaly", "gradcam")[-1] == "fused" and len(results.anatomy) == 3
    assert (
        results.heatmap("Cardiomegaly", "gradcam", "fused").shape
        == dcmread(paths["radiograph"]).pixel_array.shape
    )
    # the plugin claims our SR and SEGs above Slicer's TID 1500 plugin (0.95), and nothing else
    folder, _ = study
    headers = matching.read_headers([folder, tmp_path])
    claims = plugin.examine(headers)
    kinds = {dcmread(c.file, stop_before_pixels=True).Modality for c in claims}
    assert kinds == {"SR", "SEG"} and all(c.confidence > 0.95 for c in claims)
    assert sum(c.kind == "findings" for c in claims) == 3  # two explained radiographs and the self-test study
    foreign = dcmread(sets[0].sr)
    foreign.Manufacturer = "Another vendor"
    foreign.filename = "foreign.dcm"
    assert plugin.examine([foreign]) == []
    with pytest.raises(FileNotFoundError):
        sources.from_folder(tmp_path / "missing")


def test_a_pacs_address_is_read_or_refused_in_one_line():
    """One parser for the module's Query PACS and the node's PACS commands (cxrxai.dicom.peer)."""
    from cxrxai.dicom.peer import Peer
    from cxrxai.errors import CXRXAIError

    assert Peer.parse(" ORTHANC@pacs.example.org:4242 ") == Peer("ORTHANC", "pacs.example.org", 4242)
    for text in ("ORTHANC@pacs:0", "pacs:4242", "A@B@C:1", "TOO-LONG-AE-TITLE-X@h:104", "AE@host:port"):
        with pytest.raises(CXRXAIError, match="give it as AE@host:port"):
            Peer.parse(text)


# -- static checks of the Slicer glue ------------------------------------------------------------------


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py"))


def test_module_files_compile_and_import_nothing_heavy_at_load():
    removed_in_312 = {"distutils", "imp", "asynchat", "asyncore", "smtpd"}
    for path in _python_files(ROOT / "slicer_cxrxai"):
        tree = ast.parse(path.read_text(), filename=str(path))
        compile(tree, str(path), "exec")
        top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {a.name.split(".")[0] for n in top_level for a in n.names} | {
            (n.module or "").split(".")[0] for n in top_level if isinstance(n, ast.ImportFrom)
        }
        assert not names & (removed_in_312 | {"torch", "monai", "captum", "cxrxai"}), (path.name, names)
        # anywhere in the file: the extension meets the node only through DICOM objects
        imported = {
            (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
            for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names
        }  # fmt: skip
        assert not {name for name in imported if name.split(".")[0] == "dicom_node"}, path.name
    # the library loads without torch (Slicer without PyTorch): nothing imports it on the way
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import CXRXAILib.catalogue, CXRXAILib.display, CXRXAILib.matching, CXRXAILib.plugin, "
        "CXRXAILib.sources, CXRXAILib.local, CXRXAILib.testdata; "
        "assert 'torch' not in sys.modules and 'sqlalchemy' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code, str(MODULE)], check=True, timeout=120)


def test_the_parameter_node_holds_every_bound_widget_and_the_selections():
    """A saved scene restores the review through the @parameterNodeWrapper class: each widget the .ui binds
    by SlicerParameterName must be one of its fields (else connectGui fails), and the selections the widget
    records must be fields too."""
    tree = ast.parse((MODULE / "CXRXAI.py").read_text())
    (wrapper,) = [
        node for node in tree.body if isinstance(node, ast.ClassDef)
        and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list)
    ]  # fmt: skip
    fields = {node.target.id for node in wrapper.body if isinstance(node, ast.AnnAssign)}
    ui = ET.parse(MODULE / "Resources" / "UI" / "CXRXAI.ui").getroot()
    bound = {
        p.find("string").text for p in ui.iter("property") if p.get("name") == "SlicerParameterName"
    }
    assert bound == {"radiograph", "opacity", "threshold", "lungMask", "showAnatomy", "compareViews"}
    remembered = {
        keyword.arg for node in ast.walk(tree) if isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) == "remember" for keyword in node.keywords
    }  # fmt: skip
    assert remembered == {"resultsSR", "finding", "method", "layer"}
    assert bound | remembered <= fields


def test_every_widget_the_module_uses_is_in_the_ui_file():
    ui = ET.parse(MODULE / "Resources" / "UI" / "CXRXAI.ui").getroot()
    widgets = {w.get("name"): w.get("class") for w in ui.iter("widget")}
    declared = {c.findtext("class") for c in ui.iter("customwidget")}
    used = set()
    for path in (MODULE / "CXRXAI.py", PLUGIN / "CXRXAIDICOMPlugin.py"):
        used |= set(re.findall(r"\bui\.(\w+)", path.read_text()))
    assert used and used <= set(widgets), sorted(used - set(widgets))
    assert set(widgets.values()) <= QT_WIDGETS | declared | {"qMRMLWidget"}, set(widgets.values())
    assert (
        not set(widgets)
        - used
        - {"CXRXAI"}
        - {n for n in widgets if n.endswith(("Label", "CollapsibleButton"))}
    )


def test_cmake_lists_every_module_file_and_the_extension_is_described():
    module_cmake = (MODULE / "CMakeLists.txt").read_text()
    blocks = dict(re.findall(r"set\((MODULE_PYTHON_\w+)([^)]*)\)", module_cmake))
    listed = {t.replace("${MODULE_NAME}", "CXRXAI") for block in blocks.values() for t in block.split()}
    on_disk = {str(p.relative_to(MODULE)) for p in _python_files(MODULE) if "Testing" not in p.parts}
    resources = {str(p.relative_to(MODULE)) for p in (MODULE / "Resources").rglob("*") if p.is_file()}
    assert listed == on_disk | resources, listed ^ (on_disk | resources)
    assert (
        "slicerMacroBuildScriptedModule" in module_cmake
        and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module_cmake
    )
    plugin_cmake = (PLUGIN / "CMakeLists.txt").read_text()
    assert "${MODULE_NAME}.py" in plugin_cmake and {p.name for p in _python_files(PLUGIN)} == {
        "CXRXAIDICOMPlugin.py"
    }
    top = (ROOT / "CMakeLists.txt").read_text()
    keys = (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CATEGORY",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_DEPENDS",
        "Slicer_EXTENSION_GENERATE_CONFIG",
        "Slicer_EXTENSION_CPACK",
    )
    for key in keys:
        assert key in top, key
    assert set(re.findall(r"add_subdirectory\((\S+)\)", top)) == {
        "slicer_cxrxai/CXRXAI",
        "slicer_cxrxai/CXRXAIDICOMPlugin",
    }
    # no address of a repository that does not exist: the extension has no public one yet
    assert not re.search(r"https?://", top) and not list((ROOT / "slicer_cxrxai").glob("*.json"))
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in top
    lines = (MODULE / "Resources" / "model-requirements.txt").read_text().splitlines()
    # reviewing installs nothing (the core ships with the module); "Run locally" asks for the model packages
    assert [line for line in lines if line and not line.startswith("#")] == [
        "monai>=1.5",
        "captum>=0.8",
        "threadpoolctl>=3.1",
    ]
