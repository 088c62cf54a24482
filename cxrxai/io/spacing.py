"""A projection radiograph's pixel spacing, by the rules of DICOM PS3.3 section 10.7.1.1 (CR and DX).

A radiograph is a projection: the X-rays fan out from the focal spot, so the patient's anatomy is magnified
on the detector. Three attributes say what a pixel measures:
- Imager Pixel Spacing (0018,1164): the pixel pitch at the front of the image receptor. Measurements with
  it are at the detector plane: larger than the anatomy by the geometric magnification (about 10 % on a
  PA chest radiograph).
- Estimated Radiographic Magnification Factor (0018,1114): the source-to-detector over source-to-object
  distance; Imager Pixel Spacing divided by it estimates the spacing at the patient.
- Pixel Spacing (0028,0030): equal to Imager Pixel Spacing, still the detector plane; different, the
  image has been calibrated or corrected for magnification (Pixel Spacing Calibration Type says how);
  alone (often on CR), it cannot be told which, and is used as given.
Where none is present we say so and never invent one: a viewer then measures in pixels, not wrong
millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydicom.dataset import Dataset
from pydicom.valuerep import format_number_as_ds

SAME = 1e-6  # spacings equal within this many mm are the same


class SpacingKind(StrEnum):
    """Where a spacing measures, as a measurement's unit in a viewer should say."""

    DETECTOR = "at the detector"  # Imager Pixel Spacing: includes the geometric magnification
    ESTIMATED = "at the patient, magnification estimated"  # Imager Pixel Spacing / the magnification factor
    CALIBRATED = "calibrated"  # Pixel Spacing different from Imager Pixel Spacing
    AS_GIVEN = "as given"  # Pixel Spacing alone: calibration unknown
    FILE = "from the file"  # a research format's spacing (NRRD, NIfTI, MetaImage, TIFF)


@dataclass(frozen=True)
class PixelSpacing:
    row: float  # mm between the centres of adjacent rows
    column: float  # mm between the centres of adjacent columns
    kind: SpacingKind
    derivation: str  # the attributes it came from, for people reading predictions.json

    @property
    def pair(self) -> tuple[float, float]:
        """(row, column): DICOM's Pixel Spacing value order."""
        return self.row, self.column

    def decimal_strings(self) -> list[str]:
        """`pair` as DS values (at most 16 characters each), for Pixel Spacing and its kin."""
        return [format_number_as_ds(value) for value in self.pair]

    def as_dict(self) -> dict:
        return {"row_mm": self.row, "column_mm": self.column, "kind": str(self.kind), "from": self.derivation}


NO_SPACING = (
    "no pixel spacing in the source (no Pixel Spacing or Imager Pixel Spacing): measurements in pixels"
)


def radiograph_spacing(dataset: Dataset) -> PixelSpacing | None:
    """The spacing a ruler on this radiograph should use, or None where the header gives none."""
    pixel = _pair(dataset, "PixelSpacing")
    imager = _pair(dataset, "ImagerPixelSpacing")
    magnification = _positive(dataset.get("EstimatedRadiographicMagnificationFactor"))
    if pixel is not None and (imager is None or not _same(pixel, imager)):
        if imager is None:
            return PixelSpacing(*pixel, SpacingKind.AS_GIVEN, "Pixel Spacing")
        calibration = str(dataset.get("PixelSpacingCalibrationType", "") or "").strip()
        how = f"Pixel Spacing ({calibration or 'calibration type not given'})"
        return PixelSpacing(*pixel, SpacingKind.CALIBRATED, how)
    if imager is None:
        return None
    if magnification is not None:
        corrected = (imager[0] / magnification, imager[1] / magnification)
        derivation = f"Imager Pixel Spacing / Estimated Radiographic Magnification Factor {magnification:g}"
        return PixelSpacing(*corrected, SpacingKind.ESTIMATED, derivation)
    return PixelSpacing(*imager, SpacingKind.DETECTOR, "Imager Pixel Spacing")


def _pair(dataset: Dataset, keyword: str) -> tuple[float, float] | None:
    """A two-valued spacing with both values positive, else None (a malformed value is no spacing)."""
    value = dataset.get(keyword)
    try:
        values = [float(v) for v in value] if value is not None else []
    except (TypeError, ValueError):
        return None
    if len(values) != 2 or not all(v > 0 for v in values):
        return None
    return values[0], values[1]


def _positive(value) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and number > 0 else None


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) < SAME and abs(a[1] - b[1]) < SAME
