"""Every writer survives every header the reader accepts: VOI LUTs in either VR, a writer that fails on
one object, sources without the UIDs our objects reference, and random header mutations of the sample
and the real radiograph through `cxrxai explain --format all`."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from cxrxai.cli import main
from cxrxai.dicom.common import Device
from cxrxai.dicom.gsps import build_gsps, voi_transformations
from cxrxai.dicom.result_objects import build_dicom_results
from cxrxai.io import read_radiograph
from cxrxai.samples import chest_image, radiograph_dataset
from tests.dicom_validation import needs_dciodvfy, new_errors

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
SOURCES = {
    "sample": RESOURCES / "samples" / "sample-2.dcm",
    "real": RESOURCES / "real" / "pa-chest-wg04-rg1.dcm",
}
LUT_BITS = 12


def _voi_lut(vr: str) -> Dataset:
    """A 12-bit VOI LUT over 12-bit stored values (a gamma curve), its LUT Data in the given VR."""
    entries = np.round(((np.arange(4096) / 4095.0) ** 0.7) * 4095).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, LUT_BITS]
    item.LUTExplanation = "gamma 0.7"
    if vr == "US":
        item.add_new("LUTData", "US", [int(v) for v in entries])
    else:
        item.add_new("LUTData", "OW", entries.astype("<u2").tobytes())
    return item


def _source_with_voi_lut(folder: Path, vr: str, transfer_syntax=ExplicitVRLittleEndian) -> Path:
    ds = radiograph_dataset(chest_image(72, 56, seed=3), bits=12)
    ds.VOILUTSequence = Sequence([_voi_lut(vr)])
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    path = folder / f"voi-{vr}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    ("vr", "transfer_syntax"),
    [("US", ExplicitVRLittleEndian), ("OW", ExplicitVRLittleEndian), ("US", ImplicitVRLittleEndian)],
)
def test_presentation_state_copies_the_voi_lut_in_either_vr(explainer, tmp_path, vr, transfer_syntax):
    """The GSPS shows the source through the same VOI LUT our reader applied: LUT Data read from US values
    or OW bytes, stretched from 12 to 16 bits (a Softcopy VOI LUT may only have 8 or 16)."""
    path = _source_with_voi_lut(tmp_path, vr, transfer_syntax)
    source = pydicom.dcmread(path)
    assert source.VOILUTSequence[0]["LUTData"].VR in ("US", "OW")
    radiograph = read_radiograph(path)
    explanation = explainer.explain(radiograph, methods=["gradcam"])
    results = build_dicom_results(explanation, radiograph.dataset, radiograph.pixels)
    assert results.missing == []
    gsps = next(d for d in results.datasets if d.Modality == "PR")
    (voi,) = gsps.SoftcopyVOILUTSequence
    lut = voi.VOILUTSequence[0]
    assert list(lut.LUTDescriptor) == [4096, 0, 16] and lut.LUTExplanation == "gamma 0.7"
    # what a viewer shows through the presentation state equals what the model saw, up to the 16-bit stretch
    view = pydicom.dcmread(path)
    view.VOILUTSequence = Sequence([lut])
    shown = apply_voi_lut(view.pixel_array, view).astype(np.float64) / 65535.0
    np.testing.assert_allclose(shown, radiograph.pixels / 4095.0, atol=1e-4)
    saved = tmp_path / "pr.dcm"
    gsps.save_as(saved, enforce_file_format=True)
    reread = pydicom.dcmread(saved).SoftcopyVOILUTSequence[0].VOILUTSequence[0]
    assert np.frombuffer(reread.LUTData, "<u2").max() == 65535


def test_presentation_state_copies_the_first_window_and_skips_an_unusable_one(explainer, tmp_path):
    ds = radiograph_dataset(chest_image(72, 56, seed=4), bits=12)
    ds.WindowCenter, ds.WindowWidth = [2000, 1500], [3000, 1000]
    ds.WindowCenterWidthExplanation = ["SOFT", "BONE"]
    (window,) = voi_transformations(ds) or []
    assert (window.WindowCenter, window.WindowWidth, window.WindowCenterWidthExplanation) == (
        2000,
        3000,
        "SOFT",
    )
    ds.WindowWidth = 0  # not a window a viewer can apply: neither the reader nor the GSPS uses it
    assert voi_transformations(ds) is None
    gsps = build_gsps(ds, {}, [], Device("model", "1", "sha256:00"))
    assert "SoftcopyVOILUTSequence" not in gsps and gsps.ReferencedSeriesSequence  # highdicom copies none
    path = tmp_path / "zero-width.dcm"
    ds.save_as(path, enforce_file_format=True)
    radiograph = read_radiograph(path)
    stored = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(radiograph.pixels, stored.astype(np.float32))


def test_a_twelve_bit_modality_lut_is_read(tmp_path):
    """pydicom reads a Modality LUT of 12-bit entries as numpy `uint12` and fails; our reader does not."""
    ds = radiograph_dataset(chest_image(40, 32, seed=5), bits=12)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.ModalityLUTType = "US"
    item.add_new("LUTData", "US", list(range(4095, -1, -1)))
    ds.ModalityLUTSequence = Sequence([item])
    path = tmp_path / "mlut.dcm"
    ds.save_as(path, enforce_file_format=True)
    radiograph = read_radiograph(path)
    np.testing.assert_array_equal(radiograph.pixels, 4095 - pydicom.dcmread(path).pixel_array)


def test_an_optional_object_that_fails_leaves_the_others(
    explainer, tmp_path, monkeypatch, capsys, tiny_bundle
):
    """A presentation state that cannot be made: every other object is written, the SR does not reference
    it, and the CLI says so in one line."""
    import cxrxai.dicom.result_objects as results_module

    def broken(*args, **kwargs):
        raise TypeError("a bytes-like object is required, not 'list'")

    monkeypatch.setattr(results_module, "build_gsps", broken)
    path = _source_with_voi_lut(tmp_path, "US")
    radiograph = read_radiograph(path)
    explanation = explainer.explain(radiograph, methods=["gradcam"])
    results = build_dicom_results(explanation, radiograph.dataset, radiograph.pixels)
    assert results.missing == [
        "presentation state not made (TypeError: a bytes-like object is required, not 'list')"
    ]
    assert [d.Modality for d in results.datasets].count("PR") == 0 and results.datasets[-1].Modality == "SR"
    sr = results.datasets[-1]
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for sequence in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence")
        for study in sr.get(sequence, [])
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    } - {str(radiograph.dataset.SOPInstanceUID)}
    assert referenced == {str(d.SOPInstanceUID) for d in results.datasets[:-1]}

    code = main(
        ["explain", str(path), "--bundle", str(tiny_bundle), "--format", "all", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    (warning,) = [line for line in err.splitlines() if "not made" in line]
    assert warning.endswith(
        "presentation state not made (TypeError: a bytes-like object is required, not 'list')"
    )
    written = sorted(p.name.split("-")[0] for p in (tmp_path / "o" / "voi-US" / "dicom").iterdir())
    assert "PR" not in written and "SR" in written and "SEG" in written and "OT" in written


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"])
def test_a_source_without_reference_uids_is_refused_in_one_line(tmp_path, capsys, tiny_bundle, keyword):
    ds = radiograph_dataset(chest_image(40, 32, seed=7))
    delattr(ds, keyword)
    path = tmp_path / "no-uid.dcm"
    ds.save_as(path, enforce_file_format=True)
    out = tmp_path / "o"
    code = main(["explain", str(path), "--bundle", str(tiny_bundle), "--format", "all", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    (refusal,) = [line for line in err.splitlines() if "no-uid.dcm" in line]
    assert f"no {keyword}: DICOM results reference the source by these UIDs" in refusal
    assert not out.exists()  # refused before any work
    # maps and findings alone need no UIDs
    assert main(["explain", str(path), "--bundle", str(tiny_bundle), "--out", str(out)]) == 0


def test_an_internal_error_on_one_input_is_one_line_and_the_others_go_on(
    tmp_path, capsys, tiny_bundle, monkeypatch
):
    import cxrxai.explain.engine as engine

    real = engine.Explainer.explain
    first = {"done": False}

    def flaky(self, radiograph, *args, **kwargs):
        if not first["done"]:
            first["done"] = True
            raise ZeroDivisionError("float division by zero\nsecond line")
        return real(self, radiograph, *args, **kwargs)

    monkeypatch.setattr(engine.Explainer, "explain", flaky)
    paths = []
    for seed in (1, 2):
        path = tmp_path / f"in-{seed}.dcm"
        radiograph_dataset(chest_image(40, 32, seed=seed)).save_as(path, enforce_file_format=True)
        paths.append(str(path))
    code = main(
        ["explain", *paths, "--bundle", str(tiny_bundle), "--format", "all", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "in-1.dcm: internal error (ZeroDivisionError: float division by zero second line)" in err
    assert (tmp_path / "o" / "in-2" / "dicom").is_dir()


# -- random header mutations through --format all -------------------------------------------------------

CHARACTER_SETS = {
    "none": (None, "PHANTOM^CHEST"),
    "latin1": ("ISO_IR 100", "Müller^Jürgen"),
    "utf8": ("ISO_IR 192", "Ωμέγα^Σίσυφος"),
    "japanese": ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
}
OPTIONAL = (
    "BodyPartExamined", "ViewPosition", "PatientOrientation", "PixelSpacing", "ImagerPixelSpacing",
    "StudyDate", "StudyTime", "AccessionNumber", "PatientBirthDate", "PatientSex", "Manufacturer",
    "ReferringPhysicianName", "StudyID", "SeriesNumber", "InstanceNumber", "Laterality", "PatientName",
    "PatientID", "WindowCenterWidthExplanation", "SpecificCharacterSet",
)  # fmt: skip
TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    RLELossless, JPEGLSLossless, JPEG2000Lossless,
)  # fmt: skip

mutations = st.fixed_dictionaries(
    {
        "source": st.sampled_from(sorted(SOURCES)),
        "bits": st.sampled_from([8, 12, 16]),
        "photometric": st.sampled_from(["MONOCHROME1", "MONOCHROME2"]),
        "rescale": st.sampled_from(["none", "slope and intercept", "slope only"]),
        "voi": st.sampled_from(
            ["none", "window", "windows", "zero width", "lut US", "lut OW", "lut and window"]
        ),
        "charset": st.sampled_from(sorted(CHARACTER_SETS)),
        "drop": st.sets(st.sampled_from(OPTIONAL), max_size=6),
        "transfer_syntax": st.sampled_from(TRANSFER_SYNTAXES),
    }
)


def _mutated(source: Path, m: dict, folder: Path) -> Path:
    """The source's header with the mutation applied, its pixels reduced to a quarter a side (the header is
    what is tested; a small image keeps a hundred writer runs quick)."""
    ds = pydicom.dcmread(source)
    grey = ds.pixel_array[::4, ::4].astype(np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        grey = grey.max() - grey
    grey = (grey - grey.min()) / max(np.ptp(grey), 1.0)
    bits = m["bits"]
    top = 2**bits - 1
    stored = np.round((1.0 - grey if m["photometric"] == "MONOCHROME1" else grey) * top)
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (
        (8 if bits == 8 else 16),
        bits,
        bits - 1,
        0,
    )
    ds.PhotometricInterpretation = m["photometric"]
    ds.add_new(
        "PixelData",
        "OB" if bits == 8 else "OW",
        stored.astype(np.uint8 if bits == 8 else np.uint16).tobytes(),
    )
    for keyword in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTSequence",
                    "RescaleSlope", "RescaleIntercept", "RescaleType", "VOILUTFunction"):  # fmt: skip
        if keyword in ds:
            delattr(ds, keyword)
    if m["rescale"] != "none":
        ds.RescaleSlope = 1
        if m["rescale"] == "slope and intercept":
            ds.RescaleIntercept, ds.RescaleType = 0, "US"
    if m["voi"] in ("window", "lut and window"):
        ds.WindowCenter, ds.WindowWidth = top / 2, top * 0.8
    if m["voi"] == "windows":
        ds.WindowCenter, ds.WindowWidth, ds.WindowCenterWidthExplanation = (
            [top / 2, top / 3],
            [top, top / 4],
            ["A", "B"],
        )
    if m["voi"] == "zero width":
        ds.WindowCenter, ds.WindowWidth = top / 2, 0
    if m["voi"].startswith("lut"):
        item = Dataset()
        count = min(top + 1, 4096)  # US values in explicit VR hold at most 32767 entries
        first = (top + 1 - count) // 2  # a LUT over the middle of a 16-bit range, as a window would be
        entries = np.round(np.sqrt(np.arange(count) / (count - 1)) * top).astype(np.uint16)
        item.LUTDescriptor = [count, first, 16 if bits == 16 else max(bits, 8)]
        if m["voi"] == "lut OW":
            item.add_new("LUTData", "OW", entries.astype("<u2").tobytes())
        else:
            item.add_new("LUTData", "US", [int(v) for v in entries])
        ds.VOILUTSequence = Sequence([item])
    charset, name = CHARACTER_SETS[m["charset"]]
    if charset is None:
        if "SpecificCharacterSet" in ds:
            del ds.SpecificCharacterSet
    else:
        ds.SpecificCharacterSet = charset
    ds.PatientName = name
    for keyword in m["drop"]:
        if keyword in ds:
            delattr(ds, keyword)
    syntax = m["transfer_syntax"]
    path = folder / "source.dcm"
    # dciodvfy's baseline: the same header uncompressed (dciodvfy reads neither deflate nor big endian)
    ds.save_as(folder / "baseline.dcm", enforce_file_format=True)
    if syntax.is_compressed:
        ds.compress(syntax)
    elif syntax == ExplicitVRBigEndian:  # pydicom writes OW values as they are: swap them first
        ds.PixelData = (
            np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes() if bits > 8 else ds.PixelData
        )
        if "VOILUTSequence" in ds and ds.VOILUTSequence[0]["LUTData"].VR == "OW":
            lut = ds.VOILUTSequence[0]
            lut.add_new("LUTData", "OW", np.frombuffer(lut.LUTData, "<u2").astype(">u2").tobytes())
    ds.file_meta.TransferSyntaxUID = syntax
    pydicom.dcmwrite(
        path, ds, implicit_vr=syntax.is_implicit_VR, little_endian=syntax.is_little_endian,
        enforce_file_format=True,
    )  # fmt: skip
    return path


@needs_dciodvfy
@settings(  # no shrinking: a failing mutation is reported as drawn, and each example costs seconds
    max_examples=20,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(mutation=mutations)
def test_random_header_mutations_give_valid_objects_and_no_traceback(tmp_path_factory, tiny_bundle, mutation):
    folder = tmp_path_factory.mktemp("mutation")
    source = _mutated(SOURCES[mutation["source"]], mutation, folder)
    read_radiograph(source)  # the reader accepts every mutation: the writers must follow
    out = folder / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        # one finding's heat map exercises every writer; the untrained bundle calls most findings present
        code = main([
            "explain", str(source), "--bundle", str(tiny_bundle), "--format", "all", "--out", str(out),
            "--dicom-heatmaps", "top-1",
        ])  # fmt: skip
    said = [line for line in err.getvalue().splitlines() if "UNTRAINED" not in line]  # the tiny bundle's
    assert code == 0 and said == [], (mutation, said)
    written = sorted((out / "source" / "dicom").iterdir())
    assert {p.name.split("-")[0] for p in written} >= {"SR", "SEG", "OT", "PR"}
    for path in written:
        assert new_errors(path, folder / "baseline.dcm") == [], (mutation, path.name)
