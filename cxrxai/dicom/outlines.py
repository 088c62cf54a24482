"""Closed outlines of masks and heat maps in DICOM pixel coordinates: the presentation state draws them and
the SR's measurement groups carry them as image regions.

Contours come from contourpy (matplotlib's contour engine, small and dependency-free), so this needs no
torch and no scikit-image.
"""

from __future__ import annotations

import contourpy
import numpy as np

HOT_LEVEL = 0.5
MAX_POINTS = 400  # per outline: enough for a smooth contour, small enough for every viewer


def outlines(mask_or_map: np.ndarray, level: float = 0.5) -> list[np.ndarray]:
    """Closed outlines (N x 2 arrays of column, row in DICOM PIXEL units, where the top-left pixel's centre
    is 0.5, 0.5) of the region >= level, longest first."""
    field = np.pad(np.asarray(mask_or_map, dtype=np.float64), 1)  # closes outlines at the image border
    lines = contourpy.contour_generator(z=field).lines(level)
    result = []
    for line in lines:
        points = np.asarray(line, dtype=np.float64) - 1.0 + 0.5  # undo the pad, pixel centre -> DICOM pixel
        if len(points) < 4:
            continue
        points[:, 0] = np.clip(points[:, 0], 0.0, field.shape[1] - 2)
        points[:, 1] = np.clip(points[:, 1], 0.0, field.shape[0] - 2)
        step = max(1, len(points) // MAX_POINTS)
        sampled = points[::step]
        if not np.array_equal(sampled[0], sampled[-1]):
            sampled = np.vstack([sampled, sampled[:1]])
        result.append(sampled.astype(np.float32))
    return sorted(result, key=len, reverse=True)


def hot_outline(heat: np.ndarray, level: float = HOT_LEVEL) -> np.ndarray | None:
    """The outline of a heat map's largest region >= `level` of its maximum, or None for a flat map."""
    normalised = heat / heat.max() if heat.max() > 0 else heat
    found = outlines(normalised, level)
    return found[0] if found else None
