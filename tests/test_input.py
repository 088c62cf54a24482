"""Radiograph input: every accepted variant reads to the right grey values; everything else is refused
with one line that says what was found and what is accepted."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from cxrxai.errors import UnsupportedInputError
from cxrxai.io import read_radiograph
from cxrxai.io.sop_classes import DX_FOR_PRESENTATION
from cxrxai.samples import chest_image, radiograph_dataset

PIXELS = chest_image(48, 40, seed=2)


def _save(ds, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _expected(bits: int, pixels: np.ndarray = PIXELS) -> np.ndarray:
    return np.round(np.clip(pixels, 0, 1) * ((1 << bits) - 1))


@pytest.mark.parametrize("bits", [8, 10, 12, 14, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_uncompressed_bits_and_photometric(tmp_path, bits, photometric):
    path = _save(radiograph_dataset(PIXELS, photometric=photometric, bits=bits), tmp_path / "a.dcm")
    radiograph = read_radiograph(path)
    expected = _expected(bits)
    if photometric == "MONOCHROME1":  # stored inverted, read back bright = dense, within the stored range
        stored = _expected(bits, 1.0 - PIXELS)
        expected = stored.max() + stored.min() - stored
    np.testing.assert_array_equal(radiograph.pixels, expected)
    assert radiograph.dataset is not None and "PixelData" not in radiograph.dataset
    assert radiograph.identifiers["SOPInstanceUID"]


def test_modality_lut_and_window_are_applied(tmp_path):
    ds = radiograph_dataset(PIXELS, bits=12)
    ds.RescaleSlope, ds.RescaleIntercept = 2, -3000
    ds.WindowCenter, ds.WindowWidth = 1500, 3000
    radiograph = read_radiograph(_save(ds, tmp_path / "w.dcm"))
    rescaled = _expected(12) * 2 - 3000
    out = radiograph.pixels
    # DICOM linear window: flat below 0 and above 3000 (after rescale), linear in between
    below, above = rescaled <= 0, rescaled >= 3000
    inside = ~below & ~above
    assert below.any() and above.any() and inside.sum() > 100
    assert np.ptp(out[below]) == 0 and np.ptp(out[above]) == 0
    assert out[below].max() < out[inside].min() and out[inside].max() < out[above].min()
    assert np.corrcoef(out[inside], rescaled[inside])[0, 1] > 0.9999


def test_dx_for_presentation_reads(tmp_path):
    ds = radiograph_dataset(PIXELS, sop_class=DX_FOR_PRESENTATION)
    np.testing.assert_array_equal(read_radiograph(_save(ds, tmp_path / "dx.dcm")).pixels, _expected(16))


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_lossless_transfer_syntaxes(tmp_path, syntax):
    ds = radiograph_dataset(PIXELS, photometric="MONOCHROME1", bits=16)
    ds.compress(syntax)
    radiograph = read_radiograph(_save(ds, tmp_path / "c.dcm"))
    reference = read_radiograph(
        _save(radiograph_dataset(PIXELS, photometric="MONOCHROME1"), tmp_path / "u.dcm")
    )
    np.testing.assert_array_equal(radiograph.pixels, reference.pixels)


def test_deflate_transfer_syntax(tmp_path):
    ds = radiograph_dataset(PIXELS)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    np.testing.assert_array_equal(read_radiograph(_save(ds, tmp_path / "d.dcm")).pixels, _expected(16))


def test_jpeg_baseline(tmp_path):
    ds = radiograph_dataset(PIXELS, bits=8)
    buffer = io.BytesIO()
    Image.fromarray(_expected(8).astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    radiograph = read_radiograph(_save(ds, tmp_path / "j.dcm"))
    assert np.abs(radiograph.pixels - _expected(8)).mean() < 3.0


@pytest.mark.skipif(shutil.which("dcmcjpeg") is None, reason="DCMTK missing: `make test` installs it")
def test_jpeg_lossless_made_by_dcmtk(tmp_path):
    source = _save(radiograph_dataset(PIXELS, bits=16), tmp_path / "u.dcm")
    subprocess.run(["dcmcjpeg", "+e1", str(source), str(tmp_path / "jl.dcm")], check=True)
    assert pydicom.dcmread(tmp_path / "jl.dcm").file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    np.testing.assert_array_equal(read_radiograph(tmp_path / "jl.dcm").pixels, _expected(16))


@pytest.mark.parametrize("mode,dtype", [("L", np.uint8), ("I;16", np.uint16)])
def test_png_8_and_16_bit(tmp_path, mode, dtype):
    bits = 8 if dtype == np.uint8 else 16
    Image.fromarray(_expected(bits).astype(dtype)).save(tmp_path / "x.png")
    np.testing.assert_array_equal(read_radiograph(tmp_path / "x.png").pixels, _expected(bits))


def test_greyscale_stored_as_rgb_jpeg_is_accepted(tmp_path):
    grey = _expected(8).astype(np.uint8)
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_radiograph(tmp_path / "g.png").pixels, grey)


# ---------------------------------------------------------------------------------------------- refusals
def _with_sop(tmp_path, sop_class, modality):
    ds = radiograph_dataset(PIXELS)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.Modality = modality
    return _save(ds, tmp_path / f"{modality}.dcm")


@pytest.mark.parametrize(
    "sop_class,modality,found",
    [
        ("1.2.840.10008.5.1.4.1.1.2", "CT", "Modality CT (CT Image Storage)"),
        ("1.2.840.10008.5.1.4.1.1.4", "MR", "Modality MR (MR Image Storage)"),
        ("1.2.840.10008.5.1.4.1.1.6.1", "US", "Modality US (Ultrasound Image Storage)"),
    ],
)
def test_other_modalities_are_refused(tmp_path, sop_class, modality, found):
    with pytest.raises(UnsupportedInputError) as info:
        read_radiograph(_with_sop(tmp_path, sop_class, modality))
    message = str(info.value)
    assert found in message and "accepted: single-frame greyscale DICOM CR, DX" in message
    assert "\n" not in message


def test_colour_is_refused(tmp_path):
    ds = radiograph_dataset(PIXELS, bits=8)
    rgb = np.repeat(_expected(8).astype(np.uint8)[..., None], 3, axis=2)
    rgb[..., 0] = 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = rgb.tobytes()
    with pytest.raises(UnsupportedInputError, match=r"colour image \(RGB, 3 samples per pixel\)"):
        read_radiograph(_save(ds, tmp_path / "rgb.dcm"))
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(UnsupportedInputError, match=r"colour image \(mode RGB\)"):
        read_radiograph(tmp_path / "rgb.png")


def test_multi_frame_is_refused(tmp_path):
    ds = radiograph_dataset(PIXELS)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    with pytest.raises(UnsupportedInputError, match="multi-frame image with 2 frames"):
        read_radiograph(_save(ds, tmp_path / "mf.dcm"))


def test_no_pixel_data_is_refused(tmp_path):
    ds = radiograph_dataset(PIXELS)
    del ds.PixelData
    with pytest.raises(UnsupportedInputError, match="CR Image has no Pixel Data"):
        read_radiograph(_save(ds, tmp_path / "np.dcm"))


def test_truncated_file_is_refused(tmp_path):
    path = _save(radiograph_dataset(PIXELS), tmp_path / "t.dcm")
    path.write_bytes(path.read_bytes()[:-1500])
    with pytest.raises(UnsupportedInputError, match="truncated"):
        read_radiograph(path)


def test_non_image_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UnsupportedInputError, match="not a DICOM file or an image format we read"):
        read_radiograph(tmp_path / "notes.txt")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UnsupportedInputError, match="image could not be read"):
        read_radiograph(tmp_path / "bad.png")
    with pytest.raises(UnsupportedInputError, match="no such file"):
        read_radiograph(tmp_path / "missing.dcm")


def test_32_bit_is_refused(tmp_path):
    ds = radiograph_dataset(PIXELS)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.PixelData = np.zeros(PIXELS.shape, np.uint32).tobytes()
    with pytest.raises(UnsupportedInputError, match="32-bit pixels"):
        read_radiograph(_save(ds, tmp_path / "32.dcm"))


def test_dataset_input_and_explicit_syntax(tmp_path):
    ds = radiograph_dataset(PIXELS)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    assert read_radiograph(ds).identifiers["SOPInstanceUID"] == ds.SOPInstanceUID
