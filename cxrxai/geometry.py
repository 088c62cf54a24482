"""Where the model's working grid lies on the source image: letterbox resize + centred pad, and back.

Preprocessing scales the longest side to the model's input size (keeping the aspect ratio, as MONAI's
`Resize(size_mode="longest")` does) and pads the short side symmetrically (`SpatialPad`, method
"symmetric"). `Letterbox` records that, so every map computed on the working grid (or on a coarser layer
grid inside it) is returned at exactly the source rows x columns, aligned with the source pixels.

Resampling uses separable interpolation matrices (two small matrix products) rather than a generic warp:
a 256 x 256 map goes to 2000 x 2000 in a few milliseconds, with no torch needed (Slicer uses this too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one source image inside the square working grid of side `size`."""

    source_rows: int
    source_columns: int
    size: int
    resized_rows: int
    resized_columns: int
    pad_top: int
    pad_left: int

    @classmethod
    def fit(cls, source_rows: int, source_columns: int, size: int) -> Letterbox:
        """The letterbox MONAI's Resize(longest) + SpatialPad(symmetric) produce for this source size."""
        if source_rows < 1 or source_columns < 1 or size < 1:
            raise ValueError(
                f"image of {source_rows} x {source_columns} cannot be fitted into {size} x {size}"
            )
        scale = size / max(source_rows, source_columns)
        rows = int(round(source_rows * scale))
        columns = int(round(source_columns * scale))
        return cls(
            source_rows, source_columns, size, rows, columns, (size - rows) // 2, (size - columns) // 2
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def to_source(self, grid_map: np.ndarray) -> np.ndarray:
        """Resample a map on the working grid, or on any coarser square grid covering the same frame
        (a U-Net layer of stride 2^k), to source rows x columns with bilinear interpolation."""
        return self.to_size(grid_map, self.source_rows, self.source_columns)

    def to_size(self, grid_map: np.ndarray, rows: int, columns: int) -> np.ndarray:
        """`to_source` sampled on a rows x columns grid covering the source image instead of its own
        pixels: a map for a picture of the source at display size, without making it at source size."""
        grid_map = np.asarray(grid_map, dtype=np.float32)
        if grid_map.ndim != 2 or grid_map.shape[0] != grid_map.shape[1]:
            raise ValueError(f"expected a square 2-D map, got shape {grid_map.shape}")
        n = grid_map.shape[0]
        row_matrix = _axis_matrix(rows, self.resized_rows, self.pad_top, self.size, n)
        column_matrix = _axis_matrix(columns, self.resized_columns, self.pad_left, self.size, n)
        return (row_matrix @ grid_map @ column_matrix.T).astype(np.float32)

    def content_slice(self, n: int | None = None) -> tuple[slice, slice]:
        """The region of an n x n grid (default: the working grid) that holds image content, not padding."""
        n = n or self.size
        f = n / self.size
        top, left = int(np.floor(self.pad_top * f)), int(np.floor(self.pad_left * f))
        bottom = int(np.ceil((self.pad_top + self.resized_rows) * f))
        right = int(np.ceil((self.pad_left + self.resized_columns) * f))
        return slice(top, bottom), slice(left, right)


@lru_cache(maxsize=32)
def _axis_matrix(length: int, resized_length: int, pad: int, size: int, n: int) -> np.ndarray:
    """The interpolation matrix sampling one axis of an n-cell map, covering a working grid of `size`
    with `resized_length` cells of content after `pad`, at `length` points spanning the content. Cached
    (read-only): one image's pages and SEGs ask for the same 16 about a hundred times, and building one
    took from a seventh (512 x 480) to half (a strip tile) of a resampling's time. At 3000 pixels a side
    the largest is 1.5 MB."""
    coordinates = _working_coordinates(length, resized_length, pad)  # pixel centres on the working grid
    stride = size / n
    matrix = _linear_matrix((coordinates + 0.5) / stride - 0.5, n)
    matrix.flags.writeable = False
    return matrix


def _working_coordinates(length: int, resized_length: int, pad: int) -> np.ndarray:
    """Working-grid coordinate (pixel-centre convention) of each pixel centre of `length` pixels spanning
    the source's extent along one axis (the source's own pixels when `length` is its size)."""
    i = np.arange(length, dtype=np.float64)
    return (i + 0.5) * resized_length / length - 0.5 + pad


def _linear_matrix(coordinates: np.ndarray, n: int) -> np.ndarray:
    """Rows of linear-interpolation weights sampling an axis of length n at the given coordinates."""
    x = np.clip(coordinates, 0.0, n - 1.0)
    lower = np.floor(x).astype(np.int64)
    upper = np.minimum(lower + 1, n - 1)
    weight = (x - lower).astype(np.float32)
    matrix = np.zeros((len(x), n), dtype=np.float32)
    index = np.arange(len(x))
    np.add.at(matrix, (index, lower), 1.0 - weight)
    np.add.at(matrix, (index, upper), weight)
    return matrix
