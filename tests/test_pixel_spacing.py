"""Pixel spacing by DICOM's rules for projection radiographs (PS3.3 10.7.1.1), carried into every object
whose pixels are the radiograph's (SEG, presentation state, SR) and into predictions.json; none invented."""

from __future__ import annotations

import json

import pydicom
import pytest
from pydicom.dataset import Dataset

from cxrxai.cli import main
from cxrxai.io.sop_classes import DX_FOR_PRESENTATION
from cxrxai.io.spacing import NO_SPACING, SpacingKind, radiograph_spacing
from cxrxai.samples import chest_image, radiograph_dataset
from tests.dicom_validation import needs_dciodvfy, new_errors


def _header(**attributes) -> Dataset:
    dataset = Dataset()
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dataset


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({}, None),
        ({"PixelSpacing": [0.2, 0.25]}, (0.2, 0.25, SpacingKind.AS_GIVEN)),
        ({"ImagerPixelSpacing": [0.15, 0.15]}, (0.15, 0.15, SpacingKind.DETECTOR)),
        (
            {"ImagerPixelSpacing": [0.15, 0.12], "EstimatedRadiographicMagnificationFactor": 1.2},
            (0.125, 0.1, SpacingKind.ESTIMATED),
        ),
        (  # equal to the imager's: not calibrated, so the magnification factor still applies
            {"PixelSpacing": [0.15, 0.15], "ImagerPixelSpacing": [0.15, 0.15],
             "EstimatedRadiographicMagnificationFactor": 1.5},
            (0.1, 0.1, SpacingKind.ESTIMATED),
        ),
        (
            {"PixelSpacing": [0.14, 0.14], "ImagerPixelSpacing": [0.15, 0.15],
             "PixelSpacingCalibrationType": "GEOMETRY"},
            (0.14, 0.14, SpacingKind.CALIBRATED),
        ),
        ({"PixelSpacing": [0.15, 0.15], "ImagerPixelSpacing": [0.15, 0.15]},
         (0.15, 0.15, SpacingKind.DETECTOR)),
        ({"ImagerPixelSpacing": [0.0, 0.15]}, None),  # malformed values are no spacing
        ({"ImagerPixelSpacing": [0.15]}, None),
        ({"ImagerPixelSpacing": [0.15, 0.15], "EstimatedRadiographicMagnificationFactor": 0},
         (0.15, 0.15, SpacingKind.DETECTOR)),
    ],
    ids=["none", "pixel-only", "imager-only", "imager-magnification", "equal-magnification", "calibrated",
         "equal", "zero", "one-value", "zero-magnification"],
)  # fmt: skip
def test_the_spacing_follows_the_standards_rules(attributes, expected):
    spacing = radiograph_spacing(_header(**attributes))
    if expected is None:
        assert spacing is None
        return
    assert spacing is not None
    assert spacing.row == pytest.approx(expected[0]) and spacing.column == pytest.approx(expected[1])
    assert spacing.kind is expected[2]
    if spacing.kind is SpacingKind.CALIBRATED:
        assert "GEOMETRY" in spacing.derivation


def _explain(tmp_path, tiny_bundle, dataset: Dataset):
    source = tmp_path / "source.dcm"
    dataset.save_as(source, enforce_file_format=True)
    out = tmp_path / "out"
    argv = ["explain", str(source), "--bundle", str(tiny_bundle), "--out", str(out), "--format", "all"]
    assert main([*argv, "--methods", "gradcam"]) == 0
    folder = out / "source"
    objects = {}
    for path in sorted((folder / "dicom").glob("*.dcm")):
        objects.setdefault(pydicom.dcmread(path).Modality, []).append(path)
    return source, json.loads((folder / "predictions.json").read_text()), objects


@needs_dciodvfy
def test_a_dx_with_a_magnification_factor_gives_every_object_the_patient_spacing(tmp_path, tiny_bundle):
    dataset = radiograph_dataset(
        chest_image(96, 80, seed=3), sop_class=DX_FOR_PRESENTATION, pixel_spacing=(0.15, 0.12)
    )
    dataset.EstimatedRadiographicMagnificationFactor = 1.2
    assert "PixelSpacing" not in dataset  # a DX gives the imager's spacing only
    source, predictions, objects = _explain(tmp_path, tiny_bundle, dataset)
    assert predictions["source"]["pixel_spacing"] == {
        "row_mm": pytest.approx(0.125), "column_mm": pytest.approx(0.1), "kind": str(SpacingKind.ESTIMATED),
        "from": "Imager Pixel Spacing / Estimated Radiographic Magnification Factor 1.2",
    }  # fmt: skip
    for path in objects["SEG"]:
        seg = pydicom.dcmread(path)
        measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        assert [float(v) for v in measures.PixelSpacing] == pytest.approx([0.125, 0.1])
    (gsps,) = objects["PR"]
    (area,) = pydicom.dcmread(gsps).DisplayedAreaSelectionSequence
    assert [float(v) for v in area.PresentationPixelSpacing] == pytest.approx([0.125, 0.1])
    assert "PresentationPixelAspectRatio" not in area  # only one of the two may be given
    (sr,) = objects["SR"]
    spacings = {
        item.ConceptNameCodeSequence[0].CodeMeaning: float(item.MeasuredValueSequence[0].NumericValue)
        for item in _content(pydicom.dcmread(sr))
        if item.ValueType == "NUM" and "Pixel Spacing" in item.ConceptNameCodeSequence[0].CodeMeaning
    }
    assert spacings == {
        "Horizontal Pixel Spacing": pytest.approx(0.1), "Vertical Pixel Spacing": pytest.approx(0.125)
    }
    for paths in objects.values():
        for path in paths:
            assert new_errors(path, source) == [], path.name


def test_without_a_spacing_the_results_say_so_and_invent_none(tmp_path, tiny_bundle):
    dataset = radiograph_dataset(chest_image(96, 80, seed=4), pixel_spacing=None)
    _, predictions, objects = _explain(tmp_path, tiny_bundle, dataset)
    assert predictions["source"]["pixel_spacing"] == NO_SPACING
    for path in objects["SEG"]:
        measures = pydicom.dcmread(path).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        assert "PixelSpacing" not in measures
    (area,) = pydicom.dcmread(objects["PR"][0]).DisplayedAreaSelectionSequence
    assert "PresentationPixelSpacing" not in area and list(area.PresentationPixelAspectRatio) == [1, 1]


def _content(dataset: Dataset):
    """Every content item of an SR, depth first."""
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _content(item)
