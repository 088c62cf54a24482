"""Outlines traced on a coarser grid land where the source-size outline is."""

from __future__ import annotations

import numpy as np

from cxrxai.dicom.outlines import OUTLINE_GRID, outline_grid, outlines, to_image


def _disc(rows: int, columns: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    r, c = np.mgrid[0:rows, 0:columns]
    return ((r + 0.5 - centre[0]) ** 2 + (c + 0.5 - centre[1]) ** 2) <= radius**2


def test_the_grid_is_the_image_up_to_its_limit_and_keeps_the_aspect():
    assert outline_grid(512, 480) == (512, 480)
    assert outline_grid(3000, 2000) == (OUTLINE_GRID, round(2000 * OUTLINE_GRID / 3000))


def test_an_outline_traced_on_the_grid_lies_on_the_source_outline():
    rows, columns, centre, radius = 3000, 2000, (1400.0, 900.0), 600.0
    grid = outline_grid(rows, columns)
    (on_grid,) = outlines(
        _disc(*grid, (centre[0] * grid[0] / rows, centre[1] * grid[1] / columns), radius * grid[0] / rows)
    )
    points = to_image(on_grid, grid, rows, columns)
    distance = np.hypot(points[:, 0] - centre[1], points[:, 1] - centre[0])
    assert np.abs(distance - radius).max() < 3  # source pixels; a grid pixel is 2.9 of them
