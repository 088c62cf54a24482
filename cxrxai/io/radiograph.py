"""Read a chest radiograph into display-ready grey values, refusing anything that is not one.

Why our own reader rather than MONAI's `LoadImage`: a radiograph's grey values depend on the Modality LUT,
the VOI LUT or window, and MONOCHROME1 inversion, which MONAI's readers do not apply; TorchXRayVision's
care here is the model to follow. The grey-value pipeline is `cxrxai.io.grey`, shared with the
presentation state. Pixel decoding itself is pydicom's, with the pylibjpeg / pyjpegls plugins for JPEG
baseline / lossless, JPEG-LS, JPEG 2000, RLE and deflate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from cxrxai.errors import UnsupportedInputError
from cxrxai.io.grey import display_values
from cxrxai.io.research_formats import is_research_format, read_research_image
from cxrxai.io.sop_classes import READABLE
from cxrxai.io.spacing import PixelSpacing, radiograph_spacing

ACCEPTED = (
    "accepted: single-frame greyscale DICOM CR, DX (for presentation or processing) or Secondary Capture "
    "with 8-16 bit pixels, an 8/16-bit greyscale PNG / JPEG, or a 2-D greyscale NRRD, NIfTI, MetaImage "
    "or TIFF image"
)
RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


@dataclass
class Radiograph:
    """A radiograph ready for preprocessing.

    `pixels` is float32, rows x columns, in display orientation where larger means brighter (MONOCHROME2
    sense), after Modality LUT, VOI LUT / window and MONOCHROME1 inversion. `dataset` is the source header
    without pixel data (for DICOM results), or None for other formats. `spacing` is what a ruler on the
    source uses (`cxrxai.io.spacing`), None where the source gives none.
    """

    pixels: np.ndarray
    source: str
    identifiers: dict[str, str] = field(default_factory=dict)
    dataset: Dataset | None = None
    spacing: PixelSpacing | None = None

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def columns(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def stem(self) -> str:
        """A folder name for this input's outputs."""
        return Path(self.source).stem or "image"


def read_radiograph(source: str | Path | Dataset) -> Radiograph:
    """Read a DICOM file, a pydicom Dataset, a PNG / JPEG file, or a NRRD, NIfTI, MetaImage or TIFF file.

    Raises UnsupportedInputError with one line saying what was found and what is accepted.
    """
    if isinstance(source, Dataset):
        return _from_dataset(source, getattr(source, "filename", None) or "<dataset>")
    path = Path(source)
    if not path.is_file():
        raise UnsupportedInputError(f"{path}: no such file")
    if path.suffix.lower() in RASTER_SUFFIXES:
        return _read_raster(path)
    if is_research_format(path):
        pixels, spacing = read_research_image(path, ACCEPTED)
        return Radiograph(pixels=pixels, source=str(path), identifiers={"path": str(path)}, spacing=spacing)
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise UnsupportedInputError(
            f"{path}: not a DICOM file or an image format we read; {ACCEPTED}"
        ) from None
    except Exception as exc:  # pydicom raises many types for truncated or corrupt headers
        raise UnsupportedInputError(
            f"{path}: DICOM header could not be read ({_short(exc)}); {ACCEPTED}"
        ) from exc
    return _from_dataset(ds, str(path))


def _from_dataset(ds: Dataset, source: str) -> Radiograph:
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", "")) or "none"
    if sop_class not in READABLE:
        name = UID(sop_class).name if sop_class else "no SOP Class UID"
        raise UnsupportedInputError(f"{source}: found Modality {modality} ({name}); {ACCEPTED}")
    if "PixelData" not in ds:
        raise UnsupportedInputError(
            f"{source}: {READABLE[sop_class]} has no Pixel Data; {ACCEPTED}"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise UnsupportedInputError(f"{source}: multi-frame image with {frames} frames; {ACCEPTED}")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnsupportedInputError(
            f"{source}: colour image ({photometric or 'no Photometric Interpretation'}, "
            f"{samples} samples per pixel); {ACCEPTED}"
        )
    bits = int(ds.get("BitsAllocated", 0))
    if bits not in (8, 16):
        raise UnsupportedInputError(f"{source}: {bits}-bit pixels; {ACCEPTED}")
    try:
        stored = ds.pixel_array
    except Exception as exc:  # decoder errors: truncated pixel data, missing plugin, corrupt stream
        tsyntax = (
            ds.file_meta.get("TransferSyntaxUID", "unknown transfer syntax") if ds.get("file_meta") else "?"
        )
        raise UnsupportedInputError(
            f"{source}: pixel data could not be decoded ({UID(str(tsyntax)).name}: {_short(exc)}); "
            "the file may be truncated"
        ) from exc
    if stored.ndim != 2:
        raise UnsupportedInputError(f"{source}: pixel array has shape {stored.shape}; {ACCEPTED}")
    try:
        values = display_values(stored, ds)
    except Exception as exc:  # a header whose grey-value transformations contradict its pixels
        raise UnsupportedInputError(
            f"{source}: grey values could not be computed from the Modality / VOI LUT ({_short(exc)})"
        ) from exc
    if photometric == "MONOCHROME1":
        values = values.max() + values.min() - values
    header = ds.copy()
    if "PixelData" in header:
        del header.PixelData
    return Radiograph(
        pixels=values.astype(np.float32),
        source=source,
        identifiers=_identifiers(ds),
        dataset=header,
        spacing=radiograph_spacing(ds),
    )


def _identifiers(ds: Dataset) -> dict[str, str]:
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "AccessionNumber")
    return {key: str(ds.get(key)) for key in keys if ds.get(key) not in (None, "")}


def _read_raster(path: Path) -> Radiograph:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UnsupportedInputError(f"{path}: image could not be read ({_short(exc)}); {ACCEPTED}") from exc
    if array.ndim == 3:
        # Data sets often store greyscale radiographs as RGB; true colour is refused.
        colour = array[..., :3]
        if not (
            np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])
        ):
            raise UnsupportedInputError(f"{path}: colour image (mode {mode}); {ACCEPTED}")
        array = colour[..., 0]
    if array.ndim != 2 or array.dtype not in (np.uint8, np.uint16, np.int32, np.int16):
        raise UnsupportedInputError(f"{path}: unsupported image mode {mode}; {ACCEPTED}")
    if array.dtype == np.int32 and array.max(initial=0) > 65535:
        raise UnsupportedInputError(f"{path}: pixel values above 16 bits; {ACCEPTED}")
    return Radiograph(pixels=array.astype(np.float32), source=str(path), identifiers={"path": str(path)})


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
