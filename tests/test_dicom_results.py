"""SEG (anatomy, heatmaps), Secondary Capture pages and the SR that references them: valid, readable,
round-tripped, deterministic, for the hard sources."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless

from cxrxai.dicom.encoding import TRANSFER_SYNTAXES
from cxrxai.dicom.result_objects import (
    HeatmapSelection,
    build_dicom_results,
    display_order,
    heatmap_layers,
    strip_layers,
    write_dicom_results,
)
from cxrxai.dicom.seg import HEAT_LEVELS, SEGReadError, read_seg
from cxrxai.dicom.sr import read_sr
from cxrxai.errors import CXRXAIError
from cxrxai.io import read_radiograph
from cxrxai.labels import ANATOMY
from cxrxai.samples import chest_image, radiograph_dataset
from tests.dicom_validation import needs_dciodvfy, new_errors

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _explained(explainer, tmp_path: Path, compress: bool = False, drop: tuple[str, ...] = (), **kwargs):
    ds = radiograph_dataset(chest_image(72, 56, seed=6), **kwargs)
    for keyword in drop:
        delattr(ds, keyword)
    if compress:
        ds.compress(JPEG2000Lossless)
    source = tmp_path / "source.dcm"
    ds.save_as(source, enforce_file_format=True)
    radiograph = read_radiograph(source)
    return source, radiograph, explainer.explain(radiograph, methods=["gradcam"])


def _by_kind(paths):
    objects = [pydicom.dcmread(p) for p in paths]
    segs = [o for o in objects if o.SOPClassUID == SEG_CLASS]
    anatomy = next(s for s in segs if s.ContentLabel == "ANATOMY")
    heat = next((s for s in segs if s.ContentLabel == "HEATMAPS"), None)
    pages = [o for o in objects if o.Modality == "OT"]
    sr = next(o for o in objects if o.Modality == "SR")
    return anatomy, heat, pages, sr


@needs_dciodvfy
@pytest.mark.parametrize(
    "variant",
    [
        {"photometric": "MONOCHROME1", "patient_name": "Müller^Jürgen"},
        {"pixel_spacing": None},
        {"compress": True, "photometric": "MONOCHROME1"},
        {"drop": ("PatientOrientation", "BodyPartExamined", "ViewPosition"), "pixel_spacing": None},
    ],
    ids=["monochrome1-non-ascii", "no-pixel-spacing", "jpeg2000-source", "bare-header"],
)
def test_every_object_is_valid(explainer, tmp_path, variant):
    source, radiograph, explanation = _explained(explainer, tmp_path, **variant)
    paths = write_dicom_results(
        explanation,
        radiograph.dataset,
        radiograph.pixels,
        tmp_path / "out",
        HeatmapSelection("top-2"),
        transfer_syntax="jpeg2000-lossless" if variant.get("compress") else "explicit-little-endian",
        layer_maps=True,
    )
    assert len(paths) == 3 + 3 + 1 + 1  # three SEGs, summary + 2 finding pages, GSPS, SR
    for path in paths:
        assert new_errors(path, source) == [], path.name
        result = pydicom.dcmread(path)
        assert result.StudyInstanceUID == radiograph.dataset.StudyInstanceUID
        assert result.PatientName == radiograph.dataset.PatientName
        purposes = [
            e.PurposeOfReferenceCodeSequence[0].CodeValue for e in result.ContributingEquipmentSequence
        ]
        assert "1630" in purposes


def test_anatomy_and_heatmaps_round_trip(explainer, tmp_path):
    _, radiograph, explanation = _explained(explainer, tmp_path, photometric="MONOCHROME1")
    paths = write_dicom_results(
        explanation, radiograph.dataset, radiograph.pixels, tmp_path / "out", HeatmapSelection("all")
    )
    anatomy, heat, _, _ = _by_kind(paths)
    read = read_seg(anatomy)
    assert read.segmentation_type == "BINARY" and [s.label for s in read.segments] == list(ANATOMY)
    masks = explanation.anatomy_at_source()
    for segment, mask in zip(read.segments, masks, strict=True):
        np.testing.assert_array_equal(segment.values, mask)
    assert read.referenced_sop_instance_uids == [
        radiograph.dataset.SOPInstanceUID
    ]  # Referenced Series (OHIF)
    heatmaps = read_seg(heat)
    assert heatmaps.segmentation_type == "BINARY"
    displayed = {f.name: heatmap_layers(explanation, f.name)[0] for f in explanation.findings}
    assert len(heatmaps.segments) == 3 * len(displayed)
    for segment in heatmaps.segments:
        heatmap = displayed[segment.finding]
        assert (segment.method, segment.layer) == (heatmap.method, heatmap.layer)
        low, high = segment.band
        inside = (heatmap.values >= low) & ((heatmap.values < high) if high < 1.0 else True)
        np.testing.assert_array_equal(segment.values, inside)
    for finding in displayed:  # the bands are disjoint and cover the map from the lowest level up
        bands = [s.values for s in heatmaps.segments if s.finding == finding]
        assert (np.sum(bands, axis=0) <= 1).all()
        np.testing.assert_array_equal(np.any(bands, axis=0), displayed[finding].values >= HEAT_LEVELS[0])
    colours = {tuple(item.RecommendedDisplayCIELabValue) for item in heat.SegmentSequence}
    assert len(colours) == len(HEAT_LEVELS)


def test_heatmap_bands_of_a_large_source_follow_the_exact_bands(explainer, tmp_path):
    """Above OUTLINE_GRID pixels a side the bands are found on that grid and each source pixel takes its
    nearest grid pixel's band, i.e. the band of a point at most 0.73 pixels away along each axis. So a
    pixel whose band differs from that of the map resampled to the source must have a value within that
    distance's worth of the map's steepest slope of a band level."""
    from cxrxai.dicom.outlines import OUTLINE_GRID

    radiograph = read_radiograph(radiograph_dataset(chest_image(1500, 1250, seed=3), uid_seed="large"))
    assert max(radiograph.rows, radiograph.columns) > OUTLINE_GRID
    explanation = explainer.explain(radiograph, methods=["gradcam"])
    made = build_dicom_results(explanation, radiograph.dataset, radiograph.pixels, HeatmapSelection("top-2"))
    heat = next(d for d in made.datasets if d.get("ContentLabel") == "HEATMAPS")
    segments = read_seg(pydicom.dcmread(_encoded(heat))).segments
    assert len(segments) == 2 * len(HEAT_LEVELS)
    for segment in segments:
        exact_map = explanation.map_at_source(f"{segment.method}/{segment.layer}/{segment.finding}")
        low, high = segment.band
        exact = (exact_map >= low) & ((exact_map < high) if high < 1.0 else True)
        differ = segment.values != exact
        assert differ.mean() < 0.01, segment.label
        slope = max(np.abs(np.diff(exact_map, axis=axis)).max() for axis in (0, 1))
        off_level = np.min([np.abs(exact_map[differ] - level) for level in HEAT_LEVELS], axis=0)
        assert (off_level <= 1.5 * slope).all(), segment.label


def _encoded(dataset) -> io.BytesIO:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return buffer


def test_layer_maps_round_trip(explainer, tmp_path):
    _, radiograph, explanation = _explained(explainer, tmp_path)
    made = build_dicom_results(
        explanation, radiograph.dataset, radiograph.pixels, HeatmapSelection("all"), layer_maps=True
    )
    (layered,) = [d for d in made.datasets if d.Modality == "SEG" and d.ContentLabel == "LAYERMAPS"]
    heatmaps = read_seg(_reread(layered))
    assert heatmaps.segmentation_type == "FRACTIONAL"
    expected = {
        layer.label: layer for f in explanation.findings for layer in heatmap_layers(explanation, f.name)
    }
    assert set(heatmaps.by_label()) == set(expected)
    for label, segment in heatmaps.by_label().items():
        assert (segment.finding, segment.method, segment.layer) == tuple(label.split(" | "))
        assert segment.values.shape == (72, 56)
        assert np.abs(segment.values - np.clip(expected[label].values, 0, 1)).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("syntax", sorted(TRANSFER_SYNTAXES))
def test_image_objects_in_each_transfer_syntax(explainer, tmp_path, syntax):
    _, radiograph, explanation = _explained(explainer, tmp_path)
    made = build_dicom_results(
        explanation, radiograph.dataset, radiograph.pixels, HeatmapSelection("top-1"), transfer_syntax=syntax
    )
    images = [d for d in made.datasets if d.Modality in ("SEG", "OT")]
    assert len(images) == 2 + 2
    for dataset in images:
        back = _reread(dataset)
        assert back.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[syntax]
        assert back.pixel_array.size
    with pytest.raises(CXRXAIError, match="use one of explicit-little-endian, jpeg2000-lossless"):
        build_dicom_results(explanation, radiograph.dataset, radiograph.pixels, transfer_syntax="jpeg")


def _reread(dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def test_layers_run_from_encoder_to_decoder(explainer, tmp_path):
    _, _, explanation = _explained(explainer, tmp_path)
    layers = [h.layer for h in heatmap_layers(explanation, "Cardiomegaly")]
    assert layers == ["fused", "encoder1", "encoder2", "bottleneck", "decoder2", "decoder1"]


def test_the_model_display_layer_leads_the_seg_and_the_page(explainer, tmp_path):
    """A bundle whose evaluation found decoder2 localising best leads with decoder2: first in the SEG, the
    page's overlay (labelled) and the presentation state's; every layer, fused included, is still written."""
    source, radiograph, explanation = _explained(explainer, tmp_path)
    explanation.model["display_layers"] = {"Cardiomegaly": "decoder2", "Edema": "decoder1"}
    layers = [h.layer for h in heatmap_layers(explanation, "Cardiomegaly")]
    assert layers == ["decoder2", "fused", "encoder1", "encoder2", "bottleneck", "decoder1"]
    assert strip_layers(display_order(explanation, "Cardiomegaly")) == [
        "encoder1", "encoder2", "bottleneck", "decoder2", "decoder1"
    ]  # fmt: skip
    assert heatmap_layers(explanation, "Edema")[0].layer == "decoder1"  # each finding its own
    assert heatmap_layers(explanation, "Atelectasis")[0].layer == "fused"  # none chosen: fused
    explanation.model["display_layers"] = {"Cardiomegaly": "encoder9"}  # not among the maps: fused
    assert heatmap_layers(explanation, "Cardiomegaly")[0].layer == "fused"


def test_highdicom_segread_trap_and_our_reader(explainer, tmp_path):
    """highdicom's reader refuses a projection-radiograph SEG (no Slice Thickness); ours reads it."""
    _, radiograph, explanation = _explained(explainer, tmp_path)
    anatomy, *_ = _by_kind(
        write_dicom_results(explanation, radiograph.dataset, radiograph.pixels, tmp_path / "o")
    )
    anatomy.save_as(tmp_path / "seg.dcm")
    with pytest.raises((AttributeError, ValueError)):  # the known trap in highdicom 0.28
        hd.seg.segread(tmp_path / "seg.dcm")
    assert len(read_seg(pydicom.dcmread(tmp_path / "seg.dcm")).segments) == 3
    with pytest.raises(SEGReadError, match="not a Segmentation"):
        read_seg(radiograph.dataset)


def test_sr_references_every_object(explainer, tmp_path):
    _, radiograph, explanation = _explained(explainer, tmp_path)
    paths = write_dicom_results(
        explanation, radiograph.dataset, radiograph.pixels, tmp_path / "out", HeatmapSelection("top-1")
    )
    anatomy, heat, pages, sr = _by_kind(paths)
    current = {
        ref.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert current == {radiograph.dataset.SOPInstanceUID, anatomy.SOPInstanceUID, heat.SOPInstanceUID}
    evidence = {
        ref.ReferencedSOPInstanceUID
        for study in sr.PertinentOtherEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    presentation = next(pydicom.dcmread(p) for p in paths if pydicom.dcmread(p).Modality == "PR")
    assert evidence == {p.SOPInstanceUID for p in pages} | {presentation.SOPInstanceUID}
    assert read_sr(sr).findings == explanation.findings


def test_pages_are_burned_in_rgb(explainer, tmp_path):
    _, radiograph, explanation = _explained(explainer, tmp_path)
    _, _, pages, _ = _by_kind(
        write_dicom_results(
            explanation, radiograph.dataset, radiograph.pixels, tmp_path / "o", HeatmapSelection("top-1")
        )
    )
    assert len(pages) == 2
    for page in pages:
        assert page.PhotometricInterpretation == "RGB" and page.BurnedInAnnotation == "YES"
        assert page.pixel_array.shape[2] == 3 and page.pixel_array.shape[1] == 1024
        assert "not for diagnostic use" in page.DerivationDescription


def test_results_are_deterministic_and_source_untouched(explainer, tmp_path):
    source, radiograph, explanation = _explained(explainer, tmp_path)
    before = source.read_bytes()
    first = [
        d.SOPInstanceUID
        for d in build_dicom_results(explanation, radiograph.dataset, radiograph.pixels).datasets
    ]
    second = [
        d.SOPInstanceUID
        for d in build_dicom_results(explanation, radiograph.dataset, radiograph.pixels).datasets
    ]
    assert first == second and len(set(first)) == len(first)
    assert source.read_bytes() == before


def test_no_finding_above_threshold_writes_no_heatmap_seg(explainer, tmp_path):
    _, radiograph, explanation = _explained(explainer, tmp_path)
    for finding in explanation.findings:
        finding.threshold = 1.0
    objects = build_dicom_results(explanation, radiograph.dataset, radiograph.pixels)
    assert [o.Modality for o in objects.datasets] == ["SEG", "OT", "PR", "SR"] and objects.missing == []


def test_bad_heatmap_selection_is_refused():
    with pytest.raises(ValueError, match="use above-threshold, top-K"):
        HeatmapSelection("most").choose([])


def test_presentation_state_outlines_anatomy_and_hot_regions(explainer, tmp_path):
    from cxrxai.dicom.gsps import build_gsps
    from cxrxai.dicom.outlines import hot_outline, outlines
    from cxrxai.dicom.result_objects import device_of
    from cxrxai.explanation import FindingPrediction

    _, radiograph, explanation = _explained(explainer, tmp_path, photometric="MONOCHROME1")
    source = radiograph.dataset
    mask = np.zeros((72, 56), bool)
    mask[10:40, 5:25] = True  # rows 10..39, columns 5..24
    (outline,) = outlines(mask)
    assert outline[:, 0].min() == 5.0 and outline[:, 0].max() == 25.0  # pixel edges, DICOM PIXEL units
    assert outline[:, 1].min() == 10.0 and outline[:, 1].max() == 40.0
    yy, xx = np.mgrid[0:72, 0:56]
    heat = np.exp(-((yy - 50.0) ** 2 + (xx - 40.0) ** 2) / 30.0)
    finding = FindingPrediction("Pneumothorax", 0.91, 0.5)
    gsps = build_gsps(
        source, {"Right Lung": outlines(mask)}, [(finding, hot_outline(heat))], device_of(explanation)
    )
    assert gsps.PresentationLUTShape == "INVERSE"  # MONOCHROME1 source
    layers = {a.GraphicLayer: a for a in gsps.GraphicAnnotationSequence}
    assert set(layers) == {"ANATOMY", "FINDINGS"}
    (hot,) = layers["FINDINGS"].GraphicObjectSequence
    points = np.asarray(hot.GraphicData, dtype=float).reshape(-1, 2)
    assert abs(points[:, 0].mean() - 40.5) < 1.5 and abs(points[:, 1].mean() - 50.5) < 1.5  # around the peak
    assert layers["FINDINGS"].TextObjectSequence[0].UnformattedTextValue == "Pneumothorax p=0.91"
    path = tmp_path / "pr.dcm"
    gsps.save_as(path, enforce_file_format=True)
    assert (
        pydicom.dcmread(path).ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID
        == source.SOPInstanceUID
    )


def test_page_pixels_round_trip_losslessly(explainer, tmp_path):
    from cxrxai.dicom.result_objects import device_of
    from cxrxai.dicom.sc import build_sc, summary_page

    _, radiograph, explanation = _explained(explainer, tmp_path)
    page = np.asarray(summary_page(explanation.findings, explanation.ctr, "model 1"))
    sc = build_sc(radiograph.dataset, page, device_of(explanation), "summary", 1)
    sc.save_as(tmp_path / "sc.dcm", enforce_file_format=True)
    np.testing.assert_array_equal(pydicom.dcmread(tmp_path / "sc.dcm").pixel_array, page)


def test_later_pages_equal_pages_highdicom_builds(explainer, tmp_path):
    """PageSeries copies its first page for the later ones: each must be what highdicom would have made."""
    from cxrxai.dicom.result_objects import device_of
    from cxrxai.dicom.sc import PageSeries, build_sc, summary_page

    _, radiograph, explanation = _explained(explainer, tmp_path)
    device = device_of(explanation)
    series = PageSeries(radiograph.dataset, device)
    first = series.add(summary_page(explanation.findings, explanation.ctr, "model 1"), "summary", 1)
    page = np.random.default_rng(0).integers(0, 256, (301, 517, 3), dtype=np.uint8)  # another size, odd
    later = series.add(Image.fromarray(page), "finding:Edema", 2)
    reference = build_sc(radiograph.dataset, page, device, "finding:Edema", 2)
    for dataset in (first, later, reference):  # the times each was made at
        for keyword in ("ContentTime", "InstanceCreationTime", "TimeOfSecondaryCapture"):
            dataset[keyword] = pydicom.DataElement(keyword, "TM", "000000")
        for item in dataset.ContributingEquipmentSequence:
            if "ContributionDateTime" in item:
                item.ContributionDateTime = "20260101000000"
    assert later == reference and later.file_meta == reference.file_meta
    assert later.SOPInstanceUID != first.SOPInstanceUID and first.Rows != later.Rows  # the first is untouched
    later.save_as(tmp_path / "later.dcm", enforce_file_format=True)
    np.testing.assert_array_equal(pydicom.dcmread(tmp_path / "later.dcm").pixel_array, page)


@pytest.mark.parametrize(
    ("character_set", "patient_name", "syntax"),
    [
        ("ISO_IR 192", "PHANTOM^CHEST", "explicit-little-endian"),
        ("ISO_IR 192", "Müller^Jürgen=山田^太郎", "jpeg2000-lossless"),
        ("ISO_IR 100", "Müller^Jürgen", "explicit-little-endian"),
        (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎", "explicit-little-endian"),
    ],
    ids=["ascii", "utf8-jpeg2000", "latin1", "iso2022-japanese"],
)
def test_the_result_writer_writes_the_bytes_pydicom_writes(
    explainer, tmp_path, character_set, patient_name, syntax
):
    """Every object type, every element kind we write, in the character sets a PACS sends: our framing
    gives pydicom's bytes, without falling back to pydicom's writer."""
    from cxrxai.dicom import result_writer

    ds = radiograph_dataset(chest_image(72, 56, seed=6), patient_name=patient_name)
    ds.SpecificCharacterSet = character_set
    ds.StudyDescription = patient_name.split("=")[-1]  # a text (LO) value in the source's character set
    ds.save_as(tmp_path / "source.dcm", enforce_file_format=True)
    radiograph = read_radiograph(tmp_path / "source.dcm")
    explanation = explainer.explain(radiograph, methods=["gradcam"])
    made = build_dicom_results(
        explanation, radiograph.dataset, radiograph.pixels, HeatmapSelection("top-2"), syntax, layer_maps=True
    )
    assert sorted(d.Modality for d in made.datasets) == ["OT"] * 3 + ["PR"] + ["SEG"] * 3 + ["SR"]
    for dataset in made.datasets:
        result_writer._framed(dataset)  # raises where the fast path would hand over to pydicom
        ours = result_writer.encode_result(dataset)
        assert ours == _encoded(dataset).getvalue(), dataset.Modality
        assert str(pydicom.dcmread(io.BytesIO(ours)).PatientName) == patient_name


def test_the_result_writer_hands_what_it_does_not_frame_to_pydicom(tmp_path):
    """An Implicit VR dataset, an undecoded element: pydicom's writer, the same bytes."""
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import ImplicitVRLittleEndian

    from cxrxai.dicom import result_writer

    implicit = radiograph_dataset(chest_image(16, 16, seed=1))
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    raw = radiograph_dataset(chest_image(16, 16, seed=1))
    raw[0x00091010] = RawDataElement(pydicom.tag.Tag(0x00091010), "LO", 4, b"ABCD", 0, False, True)
    for dataset in (implicit, raw):
        with pytest.raises(result_writer._NotOurs):
            result_writer._framed(dataset)
        expected = _encoded(dataset).getvalue()
        assert result_writer.encode_result(dataset) == expected
        result_writer.write_result(dataset, tmp_path / "written.dcm")
        assert (tmp_path / "written.dcm").read_bytes() == expected


def test_the_result_writer_resolves_ambiguous_vrs_as_pydicom_does():
    """A Pixel Data still "OB or OW" (as a page is made) is resolved by pydicom's rule and framed by us."""
    import copy

    from cxrxai.dicom import result_writer

    ambiguous = radiograph_dataset(chest_image(16, 16, seed=1))
    ambiguous["PixelData"].VR = "OB or OW"
    expected = _encoded(copy.deepcopy(ambiguous)).getvalue()
    result_writer._framed(copy.deepcopy(ambiguous))  # raises where the fast path would hand over to pydicom
    assert result_writer.encode_result(ambiguous) == expected
    assert ambiguous["PixelData"].VR == "OW"  # 16 bits allocated


def test_a_one_component_person_name_in_the_source_raises_no_warning(explainer, tmp_path, recwarn):
    """A real CR's Referring Physician's Name "ward" made highdicom warn on the user's terminal."""
    _, radiograph, explanation = _explained(explainer, tmp_path)
    radiograph.dataset.ReferringPhysicianName = "ward"
    recwarn.clear()
    made = build_dicom_results(explanation, radiograph.dataset, radiograph.pixels, HeatmapSelection("top-1"))
    assert made.missing == []
    assert [str(w.message) for w in recwarn if "person name" in str(w.message)] == []


@pytest.mark.parametrize("spacing", [None, [0.2, 0.25]])
def test_every_seg_has_pixel_measures_and_invents_no_spacing(explainer, tmp_path, spacing):
    """OHIF's SEG viewport fails on a SEG without a shared Pixel Measures item (the real CR in resources
    has no spacing, and blacked the viewer out); a spacing the source does not give is never written."""
    _, radiograph, explanation = _explained(explainer, tmp_path, pixel_spacing=spacing)
    made = build_dicom_results(explanation, radiograph.dataset, radiograph.pixels, HeatmapSelection("top-1"))
    segs = [_reread(d) for d in made.datasets if d.Modality == "SEG"]
    assert len(segs) == 2
    for seg in segs:
        (measures,) = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
        if spacing is None:
            assert "PixelSpacing" not in measures and "SliceThickness" not in measures
            block = measures.private_block(0x0029, "CXRXAI")
            assert block[0x01].value == "no pixel spacing in the source image"
        else:
            assert [float(v) for v in measures.PixelSpacing] == spacing


@needs_dciodvfy
def test_transcoding_keeps_every_pixel_and_stays_valid(explainer, tmp_path):
    """What a destination with its own transfer syntax receives: each image object re-encoded, UIDs
    and pixels unchanged, still valid; BINARY SEG frames too (pydicom's compress refuses 1-bit data)."""
    from cxrxai.dicom.encoding import transcode

    source, radiograph, explanation = _explained(explainer, tmp_path)
    made = build_dicom_results(
        explanation, radiograph.dataset, radiograph.pixels, HeatmapSelection("top-1"), layer_maps=True
    )
    for dataset in made.datasets:
        original = _reread(dataset)
        there = _reread(dataset)
        transcode(there, TRANSFER_SYNTAXES["jpeg2000-lossless"])
        there = _reread(there)
        back = _reread(there)
        transcode(back, TRANSFER_SYNTAXES["explicit-little-endian"])
        back = _reread(back)
        assert there.SOPInstanceUID == back.SOPInstanceUID == original.SOPInstanceUID
        if "PixelData" not in original:
            assert there.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
            continue
        assert there.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES["jpeg2000-lossless"]
        assert back.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES["explicit-little-endian"]
        np.testing.assert_array_equal(there.pixel_array, original.pixel_array)
        np.testing.assert_array_equal(back.pixel_array, original.pixel_array)
        for name, copy in (("j2k", there), ("back", back)):
            path = tmp_path / f"{name}-{original.Modality}-{original.SOPInstanceUID}.dcm"
            copy.save_as(path, enforce_file_format=True)
            assert new_errors(path, source) == [], path.name


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: BLAS has one thread anyway")
def test_an_explaining_process_keeps_numpy_blas_to_one_thread():
    """OpenBLAS's second thread busy-waited between the result objects' small matrix products."""
    program = (
        "import json\n"
        "from threadpoolctl import threadpool_info\n"
        "from cxrxai.explain import Explainer\n"
        "from cxrxai.model.layout import DEFAULT_BUNDLE\n"
        "blas = lambda: [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "before = blas()\n"
        "Explainer.from_bundle(DEFAULT_BUNDLE)\n"
        "print(json.dumps([before, blas()]))\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert max(before) > 1 and after and set(after) == {1}


def test_building_results_leaves_the_shared_code_items_as_they_are(explainer, tmp_path):
    """The objects share one highdicom item per code (`codes.CodedConcept.concept`): a builder that added
    to one (a lung's laterality modifier) would carry it into every later object that uses the code."""
    import highdicom as hd

    from cxrxai.dicom import codes, seg
    from cxrxai.dicom.result_objects import HeatmapSelection, build_dicom_results

    _, radiograph, explanation = _explained(explainer, tmp_path)
    build_dicom_results(explanation, radiograph.dataset, radiograph.pixels, HeatmapSelection("all"))
    tables = [value for value in vars(codes).values() if isinstance(value, dict)]
    shared = [v for v in vars(codes).values() if isinstance(v, codes.CodedConcept)]
    shared += [v for table in tables for v in table.values() if isinstance(v, codes.CodedConcept)]
    items = [c.__dict__["concept"] for c in shared if "concept" in c.__dict__]  # those the build made
    items += [seg.HEATMAP_CATEGORY, seg.ANATOMY_CATEGORY]
    assert len(items) > 20 and all(isinstance(item, hd.sr.CodedConcept) for item in items)
    for item in items:
        assert [e.keyword for e in item] == ["CodeValue", "CodingSchemeDesignator", "CodeMeaning"], item
