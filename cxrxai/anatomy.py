"""Measurements from the anatomy masks (numpy only, shared by the engine and the DICOM readers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


def cardiothoracic_ratio(heart: ArrayLike, lungs: ArrayLike) -> float | None:
    """Maximal transverse cardiac diameter / maximal internal thoracic diameter (outer lung edges).

    Both widths are horizontal extents in the same grid, so the ratio is independent of pixel spacing and of
    the letterbox scale. Returns None when either mask is empty (no heart or no lungs found).
    """
    heart_columns = np.flatnonzero(np.asarray(heart, dtype=bool).any(axis=0))
    lung_columns = np.flatnonzero(np.asarray(lungs, dtype=bool).any(axis=0))
    if heart_columns.size == 0 or lung_columns.size == 0:
        return None
    heart_width = heart_columns[-1] - heart_columns[0] + 1
    thorax_width = lung_columns[-1] - lung_columns[0] + 1
    return float(heart_width / thorax_width)


@dataclass(frozen=True)
class Width:
    """A horizontal extent to draw, in continuous pixel index coordinates (pixel (r, c) centred at (r, c)):
    from the left edge of its first column to the right edge of its last, across one row."""

    row: float
    left: float
    right: float

    @property
    def pixels(self) -> float:
        return self.right - self.left


def ctr_widths(heart: ArrayLike, lungs: ArrayLike) -> tuple[Width, Width] | None:
    """The heart's and the thorax's widths that `cardiothoracic_ratio` divides, for a viewer to draw: each
    spans its structure's whole horizontal extent, across the row where the structure is widest. None
    when either mask is empty."""
    found = []
    for mask in (np.asarray(heart, dtype=bool), np.asarray(lungs, dtype=bool)):
        columns = np.flatnonzero(mask.any(axis=0))
        if columns.size == 0:
            return None
        rows = np.flatnonzero(mask.any(axis=1))
        spans = [np.flatnonzero(mask[row]) for row in rows]
        widest = rows[int(np.argmax([span[-1] - span[0] for span in spans]))]
        found.append(Width(float(widest), float(columns[0]) - 0.5, float(columns[-1]) + 0.5))
    return found[0], found[1]
