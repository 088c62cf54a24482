"""Radiographs in the formats research archives and 3D Slicer export: NRRD, NIfTI, MetaImage and TIFF
(8 or 16 bit), read with SimpleITK, the toolkit those formats are written by.

What is accepted is what `cxrxai explain` can explain: one greyscale 2-D image. A 3-D volume, a stack of
frames, or a colour image is refused with one line saying what the file holds. Grey values are used as
stored (these formats carry no window or photometric interpretation), larger meaning denser as in
MONOCHROME2, and the pixel order is the file's index order (row = the second index axis), which is how
Slicer and ITK write a 2-D image. The spacing is the file's, in mm; a file that states none reads as
1 x 1 in SimpleITK, and a radiograph's pixels are never 1 mm, so that is reported as no spacing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrxai.errors import UnsupportedInputError
from cxrxai.io.spacing import PixelSpacing, SpacingKind

# longest suffixes first: ".nii.gz" before ".gz" would matter if ".gz" were listed
SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".tif", ".tiff")
FORMAT_NAMES = "NRRD, NIfTI, MetaImage or TIFF"
UNSTATED = 1.0  # what SimpleITK reports for a file without a spacing (to float precision: TIFF's rational)


def is_research_format(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in SUFFIXES)


def read_research_image(path: Path, accepted: str) -> tuple[np.ndarray, PixelSpacing | None]:
    """The image's grey values (float32, rows x columns) and its spacing; `accepted` ends every refusal."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        why = next((line.strip() for line in first if "rror" in line), first[0] if first else "unreadable")
        raise UnsupportedInputError(f"{path}: image could not be read ({why[:160]}); {accepted}") from None
    size = image.GetSize()  # x, y[, z[, t]]
    extra = [n for n in size[2:] if n != 1]
    if extra:
        kind = (
            "a 3-D volume" if image.GetDimension() == 3 and len(extra) == 1 else "a multi-dimensional image"
        )
        if path.name.lower().endswith((".tif", ".tiff")):
            kind = f"a multi-frame TIFF ({size[2]} frames)"
        raise UnsupportedInputError(f"{path}: {kind} of {' x '.join(map(str, size))} pixels; {accepted}")
    components = image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(image)  # [z,] rows, columns[, components]
    array = array.reshape(size[1], size[0], components)
    if components > 1:
        colour = array[..., :3]
        if not (
            np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])
        ):
            raise UnsupportedInputError(
                f"{path}: colour image ({components} components per pixel); {accepted}"
            )
    pixels = array[..., 0]
    if pixels.dtype.kind not in "uif":
        raise UnsupportedInputError(f"{path}: {pixels.dtype} pixels; {accepted}")
    if pixels.dtype.kind in "ui" and pixels.size and (pixels.min() < -32768 or pixels.max() > 65535):
        raise UnsupportedInputError(f"{path}: pixel values beyond 16 bits; {accepted}")
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise UnsupportedInputError(f"{path}: pixel values that are not finite numbers; {accepted}")
    column, row = image.GetSpacing()[:2]
    spacing = None
    stated = not all(abs(value - UNSTATED) < 1e-6 for value in (column, row))
    if stated and column > 0 and row > 0:
        # to a micrometre: NIfTI stores float32, TIFF a rational
        row_mm, column_mm = round(float(row), 6), round(float(column), 6)
        spacing = PixelSpacing(row_mm, column_mm, SpacingKind.FILE, f"the {path.suffix} file's spacing")
    return pixels.astype(np.float32), spacing
