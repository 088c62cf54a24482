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
# the finest grid outlines are traced on: an outline keeps at most MAX_POINTS points, so tracing a 3000 x
# 3000 map at its own size (0.1 s each) adds nothing a viewer shows over a grid of this many pixels a side
OUTLINE_GRID = 1024


def outline_grid(rows: int, columns: int, limit: int = OUTLINE_GRID) -> tuple[int, int]:
    """(rows, columns) of the grid to trace an image's outlines on: its own size, or at most `limit` a
    side with its aspect kept."""
    scale = min(1.0, limit / max(rows, columns))
    return max(1, round(rows * scale)), max(1, round(columns * scale))


def to_image(points: np.ndarray, grid: tuple[int, int], rows: int, columns: int) -> np.ndarray:
    """Outline points traced on a `grid` (rows, columns) covering the image, in the image's own DICOM
    pixel units: both grids span the same extent, so the coordinates scale."""
    scale = np.array([columns / grid[1], rows / grid[0]], dtype=np.float32)
    return (points * scale).astype(np.float32)


def outlines(mask_or_map: np.ndarray, level: float = 0.5, most: int | None = None) -> list[np.ndarray]:
    """Closed outlines (N x 2 arrays of column, row in DICOM PIXEL units, where the top-left pixel's centre
    is 0.5, 0.5) of the region >= level, the largest enclosed area first; only the `most` largest when
    given (the others are not sampled or reduced)."""
    field = np.pad(np.asarray(mask_or_map, dtype=np.float64), 1)  # closes outlines at the image border
    lines = contourpy.contour_generator(z=field).lines(level)
    traced = [np.asarray(line, dtype=np.float64) for line in lines if len(line) >= 4]
    traced.sort(key=_enclosed_area, reverse=True)
    result = []
    for line in traced[:most]:
        points = line - 1.0 + 0.5  # undo the pad, pixel centre -> DICOM pixel
        points[:, 0] = np.clip(points[:, 0], 0.0, field.shape[1] - 2)
        points[:, 1] = np.clip(points[:, 1], 0.0, field.shape[0] - 2)
        step = max(1, len(points) // MAX_POINTS)
        sampled = points[::step]
        result.append(_corners(sampled).astype(np.float32))
    return result


def _enclosed_area(line: np.ndarray) -> float:
    """The area a closed line encloses (the shoelace formula): which region is the largest. The count of
    points is not: after `_corners` a large rectangle has 9, a small disc dozens."""
    x, y = line[:, 0], line[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _corners(points: np.ndarray) -> np.ndarray:
    """The closed outline through `points` (first point repeated last) without the points that lie on a
    straight line between their neighbours: the same shape. A mask's outline runs along pixel edges and
    diagonals, so about a third of its points are such: fewer values for the SR and the presentation
    state to carry, and for a viewer to draw."""
    ring = points[:-1] if np.array_equal(points[0], points[-1]) else points
    incoming = ring - np.roll(ring, 1, axis=0)
    outgoing = np.roll(ring, -1, axis=0) - ring
    turn = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0]
    onward = (incoming * outgoing).sum(axis=1) > 0
    scale = np.hypot(*incoming.T) * np.hypot(*outgoing.T)
    kept = ring[(np.abs(turn) > 1e-9 * scale) | ~onward]
    if len(kept) < 3:
        kept = ring
    return np.vstack([kept, kept[:1]])


def hot_outline(heat: np.ndarray, level: float = HOT_LEVEL) -> np.ndarray | None:
    """The outline of a heat map's largest region >= `level` of its maximum, or None for a flat map."""
    normalised = heat / heat.max() if heat.max() > 0 else heat
    found = outlines(normalised, level, most=1)
    return found[0] if found else None
