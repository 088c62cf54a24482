"""The findings SR: valid for dciodvfy and highdicom, exact round trip, deterministic UIDs, hard sources."""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from cxrxai.cli import main
from cxrxai.dicom import codes
from cxrxai.dicom.outlines import outlines
from cxrxai.dicom.result_objects import HeatmapSelection, build_dicom_results, device_of
from cxrxai.dicom.sr import FREEHAND_OUTLINE, SRReadError, build_sr, read_sr
from cxrxai.io import read_radiograph
from cxrxai.labels import FINDINGS
from cxrxai.samples import chest_image, radiograph_dataset
from tests.dicom_validation import needs_dciodvfy, new_errors


def _source(tmp_path: Path, name: str = "src.dcm", **kwargs) -> Path:
    path = tmp_path / name
    radiograph_dataset(chest_image(64, 48, seed=3), **kwargs).save_as(path, enforce_file_format=True)
    return path


def _sr_for(explainer, source_path: Path):
    """Findings and anatomy without maps: every finding in the Qualitative Evaluations container."""
    radiograph = read_radiograph(source_path)
    explanation = explainer.predict(radiograph)
    anatomy = dict(zip(explanation.anatomy_names, explanation.anatomy_at_source(), strict=True))
    return (
        explanation,
        radiograph,
        build_sr(
            radiograph.dataset,
            explanation.findings,
            explanation.ctr,
            device_of(explanation),
            anatomy_outlines={name: found[0] for name, mask in anatomy.items() if (found := outlines(mask))},
        ),
    )


def _mapped_sr_for(explainer, source_path: Path, selection: str = "top-3"):
    """The SR as `cxrxai explain --format all` makes it: the selected findings with hot-region outlines."""
    radiograph = read_radiograph(source_path)
    explanation = explainer.explain(radiograph, methods=("gradcam",))
    made = build_dicom_results(
        explanation, radiograph.dataset, radiograph.pixels, HeatmapSelection(selection)
    )
    return explanation, made.datasets[-1]


def _reread(dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def test_round_trip_is_exact(explainer, tmp_path):
    explanation, radiograph, sr = _sr_for(explainer, _source(tmp_path))
    back = read_sr(_reread(sr))
    assert [f.name for f in back.findings] == list(FINDINGS)
    for ours, theirs in zip(explanation.findings, back.findings, strict=True):
        assert theirs.probability == ours.probability and theirs.threshold == ours.threshold
        assert back.present[ours.name] == ours.present
    assert back.ctr == explanation.ctr
    assert (
        back.algorithm_name == explanation.model["name"]
        and back.algorithm_version == explanation.model["version"]
    )
    assert back.source_sop_instance_uid == radiograph.dataset.SOPInstanceUID


@needs_dciodvfy
@pytest.mark.parametrize(
    "variant",
    [
        {"photometric": "MONOCHROME1", "patient_name": "Müller^Jürgen"},
        {"pixel_spacing": None},
        {"patient_name": "山田^太郎"},
        {"bits": 8},
    ],
)
def test_dciodvfy_reports_no_new_error(explainer, tmp_path, variant):
    source = _source(tmp_path, **variant)
    _, _, sr = _sr_for(explainer, source)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert new_errors(path, source) == []
    reread = pydicom.dcmread(path)
    assert reread.PatientName == pydicom.dcmread(source).PatientName  # non-ASCII names survive
    assert reread.StudyInstanceUID == pydicom.dcmread(source).StudyInstanceUID  # joins the source study


@needs_dciodvfy
def test_jpeg2000_source(explainer, tmp_path):
    ds = radiograph_dataset(chest_image(64, 48, seed=4), photometric="MONOCHROME1")
    ds.compress(JPEG2000Lossless)
    source = tmp_path / "j2k.dcm"
    ds.save_as(source, enforce_file_format=True)
    _, _, sr = _sr_for(explainer, source)
    sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    assert new_errors(tmp_path / "sr.dcm", source) == []
    assert read_sr(pydicom.dcmread(tmp_path / "sr.dcm")).source_sop_instance_uid == ds.SOPInstanceUID


def test_highdicom_parses_the_report(explainer, tmp_path):
    path = _source(tmp_path)
    source = pydicom.dcmread(path)
    explanation, sr = _mapped_sr_for(explainer, path)
    sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    parsed = hd.sr.srread(tmp_path / "sr.dcm")
    numbered = parsed.content.get_image_measurement_groups()  # TID 1501: findings, the heart with its CTR
    outlined = parsed.content.get_planar_roi_measurement_groups()  # TID 1410: the lungs
    by_finding = {
        codes.finding_for_code(g.finding_type.value, g.finding_type.scheme_designator): g for g in numbered
    }
    top = sorted(explanation.findings, key=lambda f: f.probability, reverse=True)[:3]
    assert {f.name for f in top} <= set(by_finding)
    for finding in top:
        group = by_finding[finding.name]
        assert group.tracking_identifier == FREEHAND_OUTLINE  # so OHIF loads it into its panel
        (comment,) = [
            i for i in group[0].ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121106"
        ]
        assert comment.TextValue.startswith(f"{finding.name}: ")
        probability, threshold = group.get_measurements()
        assert probability.name == codes.PROBABILITY_OF[finding.name].code
        assert probability.value == pytest.approx(finding.probability)
        assert not threshold.referenced_coordinates
        (region,) = probability.referenced_coordinates  # the hot region the probability is shown on
        assert region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        points = region.value
        assert (points[0] == points[-1]).all() and len(points) >= 4  # closed
        (image,) = region.ContentSequence
        assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    lungs = {
        codes.ANATOMY_CODES["Right Lung"].code, codes.ANATOMY_CODES["Left Lung"].code
    }  # fmt: skip
    assert {g.finding_type for g in outlined} <= lungs and all(g.roi is not None for g in outlined)
    heart = [g for g in numbered if g.finding_type == codes.ANATOMY_CODES["Heart"].code]
    if explanation.ctr is not None:
        assert [m.value for m in heart[0].get_measurements()] == [pytest.approx(explanation.ctr)]


def test_every_measurement_group_has_one_outline(explainer, tmp_path):
    """OHIF stops at a measurement group without image coordinates (a TypeError), and takes a group's
    geometry from its first NUM item when it has one: every group has exactly one SCOORD, the group's own
    region when it has no number, else a child of its first NUM; its only child is the image it is on."""
    _, sr = _mapped_sr_for(explainer, _source(tmp_path), "all")
    (measurements,) = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"]
    assert measurements.ContentSequence  # the findings whose maps have a hot region, and the anatomy
    for group in measurements.ContentSequence:
        numbers = [i for i in group.ContentSequence if i.ValueType == "NUM"]
        holder = numbers[0] if numbers else group
        (scoord,) = [i for i in _flatten(group.ContentSequence) if i.ValueType == "SCOORD"]
        assert scoord in list(holder.ContentSequence)
        assert scoord.GraphicType == "POLYLINE"
        (image,) = scoord.ContentSequence
        assert image.ValueType == "IMAGE" and len(image.ReferencedSOPSequence) == 1
        tracking = [i for i in group.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "112039"]
        assert tracking[0].TextValue == FREEHAND_OUTLINE


def test_ihe_ai_results_attributes(explainer, tmp_path):
    explanation, _, sr = _sr_for(explainer, _source(tmp_path))
    (equipment,) = [e for e in sr.ContributingEquipmentSequence if e.Manufacturer == "CXR-XAI"]
    purpose = equipment.PurposeOfReferenceCodeSequence[0]
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning) == (
        "1630",
        "99IHE",
        "Processing Algorithm",
    )
    assert equipment.SoftwareVersions == explanation.model["version"] and equipment.DeviceUID
    assert {s.CodingSchemeDesignator for s in sr.CodingSchemeIdentificationSequence} >= {"99CXRXAI", "99IHE"}
    assert "not for diagnostic use" in sr.SeriesDescription
    texts = [str(item.TextValue) for item in _flatten(sr.ContentSequence) if item.ValueType == "TEXT"]
    assert "AI-generated - not for diagnostic use" in " ".join(texts)  # in the report content itself
    observer = {
        item.ConceptNameCodeSequence[0].CodeValue: item for item in sr.ContentSequence if "TextValue" in item
    }
    assert observer["121016"].TextValue == explanation.model["content_hash"]  # Device Observer Serial Number


def test_uids_are_deterministic_per_source_and_model(explainer, tmp_path):
    source = _source(tmp_path)
    _, _, first = _sr_for(explainer, source)
    _, _, second = _sr_for(explainer, source)
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (
        second.SOPInstanceUID,
        second.SeriesInstanceUID,
    )
    explanation, radiograph, _ = _sr_for(explainer, source)
    other_model = device_of(explanation).__class__("other", "9", "sha256:" + "0" * 64)
    third = build_sr(radiograph.dataset, explanation.findings, explanation.ctr, other_model)
    assert third.SOPInstanceUID != first.SOPInstanceUID
    _, _, fourth = _sr_for(explainer, _source(tmp_path, "other.dcm"))
    assert fourth.SOPInstanceUID != first.SOPInstanceUID


def test_reader_refuses_what_is_not_ours(explainer, tmp_path):
    with pytest.raises(SRReadError, match="not a Comprehensive / Enhanced SR"):
        read_sr(pydicom.dcmread(_source(tmp_path)))
    _, _, sr = _sr_for(explainer, _source(tmp_path))
    damaged = _reread(sr)
    groups = damaged.ContentSequence[-1].ContentSequence
    del groups[0]
    with pytest.raises(SRReadError, match="lacks probability, threshold or decision for: No Finding"):
        read_sr(damaged)


def test_cli_writes_dicom_results(tiny_bundle, tmp_path, capsys):
    source = _source(tmp_path, photometric="MONOCHROME1")
    png = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray((chest_image(30, 30) * 255).astype("uint8")).save(png)
    code = main(
        [
            "explain",
            str(source),
            str(png),
            "--out",
            str(tmp_path / "out"),
            "--bundle",
            str(tiny_bundle),
            "--format",
            "all",
            "--methods",
            "gradcam",
        ]
    )
    assert code == 1  # the PNG cannot have DICOM results
    assert "x.png: DICOM results need a DICOM source image" in capsys.readouterr().err
    (sr_path,) = (tmp_path / "out" / "src" / "dicom").glob("SR-*.dcm")
    assert read_sr(pydicom.dcmread(sr_path)).findings[0].name == "No Finding"
    assert (tmp_path / "out" / "src" / "predictions.json").is_file()


def test_dcmqi_tid1500reader_reads_our_sr(explainer, tmp_path):
    """dcmqi is the reader 3D Slicer's QuantitativeReporting uses for TID 1500."""
    import json
    import subprocess
    import sys

    reader = Path(sys.executable).parent / "tid1500reader"
    if not reader.exists():
        pytest.skip("dcmqi not installed: `make test` installs it")
    explanation, sr = _mapped_sr_for(explainer, _source(tmp_path, patient_name="Müller^Jürgen"), "all")
    sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    out = tmp_path / "sr.json"
    completed = subprocess.run(
        [str(reader), "--inputDICOM", str(tmp_path / "sr.dcm"), "--outputMetadata", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    metadata = json.loads(out.read_text())
    groups = {
        codes.finding_for_code(g["Finding"]["CodeValue"], g["Finding"]["CodingSchemeDesignator"]): g
        for g in metadata["Measurements"]
    }
    outlined = [f for f in explanation.findings if f.name in groups]
    assert outlined  # with --dicom-heatmaps all every finding whose map has a hot region is outlined
    for finding in outlined:
        items = {
            i["quantity"]["CodeValue"]: float(i["value"]) for i in groups[finding.name]["measurementItems"]
        }
        probability = codes.PROBABILITY_OF[finding.name].code.value
        assert items[probability] == pytest.approx(finding.probability, abs=1e-12)
        decision = groups[finding.name]["qualitativeEvaluations"][0]["conceptValue"]["CodeMeaning"]
        assert decision == ("Present" if finding.present else "Absent")


@needs_dciodvfy
def test_dciodvfy_oracle_can_fail(explainer, tmp_path):
    source = _source(tmp_path)
    _, _, sr = _sr_for(explainer, source)
    broken = _reread(sr)
    del broken.CompletionFlag
    broken.save_as(tmp_path / "broken.dcm")
    assert any("CompletionFlag" in line for line in new_errors(tmp_path / "broken.dcm", source))


def _flatten(items):
    for item in items:
        yield item
        yield from _flatten(item.get("ContentSequence", []))


def test_conformance_statement_lists_every_code():
    text = (Path(__file__).resolve().parent.parent / "docs" / "conformance.md").read_text()
    for name, concept in {**codes.FINDING_CODES}.items():
        assert name in text and concept.code.value in text, name
    for concept in (
        codes.PROBABILITY,
        *codes.PROBABILITY_OF.values(),
        codes.DECISION_THRESHOLD,
        codes.CARDIOTHORACIC_RATIO,
        codes.PROCESSING_ALGORITHM,
    ):
        assert concept.code.value in text


def test_our_sr_assembly_gives_highdicoms_dataset(explainer, tmp_path, monkeypatch):
    """build_sr assembles the SR document itself (highdicom's class deep-copies, re-parses and searches
    the content tree: most of the SR's time); the document must be the one highdicom's class makes."""
    import cxrxai.dicom.sr as sr_module
    from cxrxai.dicom.common import SERIES, result_uid

    path = _source(tmp_path)
    _, ours = _mapped_sr_for(explainer, path)

    def highdicoms(source, root, evidence, device):
        uid = str(source.SOPInstanceUID)
        return hd.sr.Comprehensive3DSR(
            evidence=evidence,
            content=root,
            series_instance_uid=result_uid(uid, device.content_hash, "sr", "series"),
            series_number=SERIES["sr"][0],
            sop_instance_uid=result_uid(uid, device.content_hash, "sr", "instance"),
            instance_number=1,
            manufacturer=device.manufacturer,
            is_complete=True,
        )

    monkeypatch.setattr(sr_module, "_comprehensive_3d_sr", highdicoms)
    _, theirs = _mapped_sr_for(explainer, path)
    clock = {
        "InstanceCreationDate",
        "InstanceCreationTime",
        "ContentDate",
        "ContentTime",
        "ContributionDateTime",
    }
    for dataset in (ours, theirs):
        dataset.walk(lambda ds, element: ds.__delitem__(element.tag) if element.keyword in clock else None)
    assert _reread(ours) == _reread(theirs)
    assert ours.file_meta == theirs.file_meta
