"""Outlines traced on a coarser grid land where the source-size outline is."""

from __future__ import annotations

import contourpy
import numpy as np
import pytest

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


def _distance_to_polyline(point: np.ndarray, line: np.ndarray) -> float:
    start, end = line[:-1].astype(float), line[1:].astype(float)
    along = end - start
    t = np.clip(((point - start) * along).sum(1) / np.maximum((along**2).sum(1), 1e-12), 0, 1)
    return float(np.hypot(*(start + t[:, None] * along - point).T).min())


@pytest.mark.parametrize("shape", ["rectangle", "disc"])
def test_outlines_keep_their_corners_and_drop_the_points_between_them(shape):
    """Points on a straight line between their neighbours go; every traced point stays on the outline."""
    if shape == "rectangle":
        mask = np.zeros((40, 50), dtype=bool)
        mask[10:30, 12:40] = True
    else:
        mask = _disc(60, 60, (30.0, 28.0), 20.0)
    (outline,) = outlines(mask)
    traced = np.asarray(contourpy.contour_generator(z=np.pad(mask.astype(float), 1)).lines(0.5)[0]) - 0.5
    assert np.array_equal(outline[0], outline[-1])
    assert len(outline) <= (9 if shape == "rectangle" else 0.8 * len(traced))  # 4 corners, 4 cuts, closed
    assert max(_distance_to_polyline(point, outline) for point in traced) < 1e-5


def test_the_largest_region_comes_first_whatever_its_number_of_points():
    """A large rectangle keeps 9 points after the straight runs go, a small disc dozens: the rectangle is
    still the first outline, and a hot map's outline is the rectangle's."""
    from cxrxai.dicom.outlines import hot_outline

    mask = np.zeros((80, 80), dtype=bool)
    mask[5:45, 5:70] = True
    mask |= _disc(80, 80, (65.0, 40.0), 6.0)
    found = outlines(mask)
    assert len(found) == 2 and len(found[0]) < len(found[1])
    columns, rows = found[0][:, 0], found[0][:, 1]
    assert (columns.min(), columns.max(), rows.min(), rows.max()) == (5.0, 70.0, 5.0, 45.0)
    assert np.array_equal(hot_outline(mask.astype(np.float32)), found[0])
    assert len(outlines(mask, most=1)) == 1
