"""Measurements from the anatomy masks (numpy only, shared by the engine and the DICOM readers)."""

from __future__ import annotations

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
