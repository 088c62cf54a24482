"""The grey-value pipeline of a projection radiograph (PS3.3 C.11): Modality LUT, then VOI LUT or window.

One decision for the reader and for the presentation state we write: `voi_in_use` returns the VOI
transformation the reader applies, so the GSPS carries the same one and a PACS viewer shows what the
model and our overlay pages saw. Lookup tables are applied here rather than by pydicom: pydicom reads a
Modality LUT of 12-bit entries as a `uint12` array, which numpy does not have, and either table may
come as US values (a list) or OW bytes; `lut_entries` reads both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_windowing
from pydicom.uid import ExplicitVRBigEndian

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True)
class LookupTable:
    """One item of a Modality or VOI LUT Sequence, read: entries as uint16, the first mapped value, and
    the bits per entry the descriptor declares (the output range a viewer scales to the display)."""

    first_mapped: int
    entries: np.ndarray
    bits: int
    explanation: str | None = None


def lut_entries(item: Dataset, source: Dataset) -> LookupTable | None:
    """The LUT of one sequence item, or None when the item is unusable (no data, an entry count that
    does not match the descriptor, bits outside 8-16)."""
    descriptor = item.get("LUTDescriptor")
    if descriptor is None or "LUTData" not in item:
        return None
    try:
        count, first, bits = (int(v) for v in descriptor)
    except (TypeError, ValueError):  # not three integers
        return None
    count = count or 2**16
    if not 8 <= bits <= 16:
        return None
    data = item.LUTData
    if isinstance(data, bytes) and bits == 8 and len(data) in (count, count + 1):  # packed 8-bit entries
        entries = np.frombuffer(data[:count], dtype=np.uint8)
    elif isinstance(data, bytes):
        big = str(source.get("file_meta", Dataset()).get("TransferSyntaxUID", "")) == ExplicitVRBigEndian
        entries = np.frombuffer(data[: len(data) // 2 * 2], dtype=">u2" if big else "<u2")
    else:
        entries = np.atleast_1d(np.asarray(data, dtype=np.int64))
    if entries.size != count or entries.size == 0:
        return None
    explanation = item.get("LUTExplanation")
    return LookupTable(
        first, entries.astype(np.uint16), bits, str(explanation) if explanation is not None else None
    )


def look_up(values: np.ndarray, table: LookupTable) -> np.ndarray:
    """Values below the first mapped value take the first entry, values past the end the last."""
    index = np.clip(np.round(values - table.first_mapped), 0, table.entries.size - 1).astype(np.int64)
    return table.entries[index].astype(np.float64)


def modality_values(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values through the Modality LUT (a usable LUT first, else Rescale Slope and Intercept)."""
    sequence = ds.get("ModalityLUTSequence")
    if sequence:
        table = lut_entries(sequence[0], ds)
        if table is not None:
            return look_up(stored.astype(np.float64), table)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        return stored.astype(np.float64) * float(slope) + float(intercept)
    return stored.astype(np.float64)


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str
    explanation: str | None


def first_window(ds: Dataset) -> Window | None:
    """The first Window Center / Width pair when it is one a viewer can apply (PS3.3 C.11.2.1.2)."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c = float(np.atleast_1d(np.asarray(center, dtype=np.float64))[0])
        w = float(np.atleast_1d(np.asarray(width, dtype=np.float64))[0])
    except (TypeError, ValueError, IndexError):  # empty or not numbers
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function not in VOI_FUNCTIONS or not np.isfinite(c) or not np.isfinite(w):
        return None
    if (function == "LINEAR" and w < 1) or w <= 0:
        return None
    explanations = np.atleast_1d(np.asarray(ds.get("WindowCenterWidthExplanation") or [], dtype=object))
    return Window(c, w, function, str(explanations[0]) if explanations.size else None)


def voi_in_use(ds: Dataset) -> LookupTable | Window | None:
    """The VOI transformation the reader applies: the first VOI LUT when usable, else the first window
    when usable, else none (the full range is shown)."""
    sequence = ds.get("VOILUTSequence")
    table = lut_entries(sequence[0], ds) if sequence else None
    return table if table is not None else first_window(ds)


def display_values(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored pixel values to the grey values a viewer displays, before MONOCHROME1 inversion."""
    values = modality_values(stored, ds)
    voi = voi_in_use(ds)
    if isinstance(voi, LookupTable):
        return look_up(values, voi)
    if isinstance(voi, Window):
        view = Dataset()  # pydicom's windowing reads these; a copy keeps the header untouched
        for keyword in ("PhotometricInterpretation", "BitsStored", "PixelRepresentation",
                        "RescaleSlope", "RescaleIntercept", "ModalityLUTSequence"):  # fmt: skip
            if keyword in ds:
                setattr(view, keyword, ds[keyword].value)
        view.WindowCenter, view.WindowWidth = voi.center, voi.width
        view.VOILUTFunction = voi.function
        if "ModalityLUTSequence" in view and lut_entries(view.ModalityLUTSequence[0], ds) is None:
            del view.ModalityLUTSequence
        return np.asarray(apply_windowing(values, view), dtype=np.float64)
    return values
