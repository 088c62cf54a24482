"""Measurements from the anatomy masks (numpy only, shared by the engine and the DICOM readers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


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


def cardiothoracic_ratio(heart: ArrayLike, lungs: ArrayLike) -> float | None:
    """Maximal transverse cardiac diameter / maximal internal thoracic diameter (outer lung edges).

    Both widths are horizontal extents in the same grid, so the ratio is independent of pixel spacing and of
    the letterbox scale. Returns None when either mask is empty (no heart or no lungs found).
    """
    widths = ctr_widths(heart, lungs)
    return None if widths is None else float(widths[0].pixels / widths[1].pixels)


def ctr_widths(heart: ArrayLike, lungs: ArrayLike) -> tuple[Width, Width] | None:
    """The heart's and the thorax's widths that `cardiothoracic_ratio` divides, for a viewer to draw: each
    spans its structure's whole horizontal extent, across the row where the structure is widest. None
    when either mask is empty."""
    found = []
    for structure in (heart, lungs):
        mask = np.asarray(structure, dtype=bool)
        columns = np.flatnonzero(mask.any(axis=0))
        if columns.size == 0:
            return None
        first = mask.argmax(axis=1)
        last = mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
        widest = int(np.argmax(np.where(mask.any(axis=1), last - first, -1)))  # the first widest row
        found.append(Width(float(widest), float(columns[0]) - 0.5, float(columns[-1]) + 0.5))
    return found[0], found[1]
