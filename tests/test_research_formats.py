"""Radiographs in research and 3D Slicer formats (NRRD, NIfTI, MetaImage, 16-bit TIFF) read through
SimpleITK with their spacing; a volume, a stack of frames or a colour image refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from cxrxai.cli import main
from cxrxai.errors import UnsupportedInputError
from cxrxai.io import read_radiograph
from cxrxai.io.spacing import SpacingKind

PIXELS = (np.arange(96 * 80).reshape(96, 80) * 7 % 4096).astype(np.uint16)  # rows x columns, 12 bits
FORMATS = ["chest.nrrd", "chest.nii.gz", "chest.nii", "chest.mha", "chest.tif"]


def _write(path, array, spacing=(0.139, 0.143), vector=False):
    image = sitk.GetImageFromArray(array, isVector=vector)
    if spacing is not None:
        image.SetSpacing(spacing)  # (column, row): ITK's x, y
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_reads_with_its_pixels_and_spacing(tmp_path, name):
    radiograph = read_radiograph(_write(tmp_path / name, PIXELS))
    assert radiograph.pixels.dtype == np.float32 and np.array_equal(radiograph.pixels, PIXELS)
    assert radiograph.dataset is None and radiograph.spacing is not None
    assert (radiograph.spacing.row, radiograph.spacing.column) == (0.143, 0.139)
    assert radiograph.spacing.kind is SpacingKind.FILE


@pytest.mark.parametrize("name", ["chest.nrrd", "chest.tif"])
def test_a_file_without_a_spacing_reads_as_having_none(tmp_path, name):
    assert read_radiograph(_write(tmp_path / name, PIXELS, spacing=None)).spacing is None


def test_a_2d_image_stored_as_one_slice_reads_as_a_radiograph(tmp_path):
    radiograph = read_radiograph(_write(tmp_path / "slice.nrrd", PIXELS[None], spacing=(0.139, 0.143, 1.0)))
    assert np.array_equal(radiograph.pixels, PIXELS) and radiograph.spacing is not None


def test_greyscale_stored_as_rgb_is_read_and_colour_refused(tmp_path):
    grey = np.repeat(PIXELS[..., None].astype(np.uint8), 3, axis=2)
    read = read_radiograph(_write(tmp_path / "grey.mha", grey, vector=True))
    assert np.array_equal(read.pixels, grey[..., 0])
    colour = grey.copy()
    colour[..., 1] //= 2
    with pytest.raises(UnsupportedInputError, match=r"colour\.mha: colour image \(3 components per pixel\)"):
        read_radiograph(_write(tmp_path / "colour.mha", colour, vector=True))


@pytest.mark.parametrize(
    ("name", "array", "found"),
    [
        ("volume.nrrd", np.zeros((4, 96, 80), np.int16), "a 3-D volume of 80 x 96 x 4 pixels"),
        ("volume.nii.gz", np.zeros((4, 96, 80), np.float32), "a 3-D volume of 80 x 96 x 4 pixels"),
        ("frames.tif", np.zeros((3, 96, 80), np.uint16), "a multi-frame TIFF (3 frames)"),
        ("wide.mha", np.full((96, 80), 70000, np.uint32), "pixel values beyond 16 bits"),
        ("nan.mha", np.full((96, 80), np.nan, np.float32), "pixel values that are not finite numbers"),
    ],
)
def test_what_is_not_one_greyscale_radiograph_is_refused_in_one_line(tmp_path, name, array, found):
    path = _write(tmp_path / name, array, spacing=None)
    with pytest.raises(UnsupportedInputError) as refused:
        read_radiograph(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: {found}") and "accepted:" in message and "\n" not in message


def test_a_damaged_file_is_one_line(tmp_path):
    path = tmp_path / "damaged.nrrd"
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 2\nsizes: 80 96\nencoding: raw\n\n" + b"\0" * 10)
    with pytest.raises(UnsupportedInputError, match="damaged.nrrd: image could not be read") as refused:
        read_radiograph(path)
    assert "\n" not in str(refused.value)


def test_explain_takes_a_research_format_and_keeps_its_spacing(tmp_path, tiny_bundle, capsys):
    folder = tmp_path / "archive"
    folder.mkdir()
    _write(folder / "chest.nii.gz", PIXELS)
    _write(folder / "volume.nrrd", np.zeros((4, 96, 80), np.int16), spacing=None)
    out = tmp_path / "out"
    argv = ["explain", str(folder), "--bundle", str(tiny_bundle), "--out", str(out), "--methods", "gradcam"]
    assert main(argv) == 1  # one of the two inputs refused; the other explained
    err = capsys.readouterr().err.strip().splitlines()
    assert any("volume.nrrd: a 3-D volume" in line for line in err) and "Traceback" not in "\n".join(err)
    predictions = json.loads((out / "chest.nii" / "predictions.json").read_text())
    assert predictions["source"]["pixel_spacing"]["row_mm"] == 0.143
    assert predictions["source"]["pixel_spacing"]["kind"] == str(SpacingKind.FILE)
