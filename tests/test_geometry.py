"""Maps come back at the source rows x columns, aligned with the source pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxrxai.geometry import Letterbox
from cxrxai.io import read_radiograph
from cxrxai.model.bundle import Preprocessing
from cxrxai.model.preprocess import geometry_transform, prepare
from cxrxai.samples import radiograph_dataset


@pytest.mark.parametrize("shape", [(300, 200), (101, 257), (64, 64), (20, 30), (2000, 1700), (33, 1)])
def test_letterbox_matches_monai_resize_and_pad(shape):
    p = Preprocessing(input_size=64)
    geometry = Letterbox.fit(*shape, 64)
    resize, pad = geometry_transform(p).transforms
    placed = pad(resize(torch.ones((1, *shape))))[0].numpy()
    rows, columns = geometry.content_slice()
    expected = np.zeros((64, 64), bool)
    expected[rows, columns] = True
    np.testing.assert_array_equal(placed > 0, expected)


def _marker_image(rows: int, columns: int) -> np.ndarray:
    """Background 0.2 with an L-shaped bright marker near the top-left: any flip or transpose moves it."""
    image = np.full((rows, columns), 0.2)
    image[20:60, 15:25] = 1.0  # vertical bar
    image[50:60, 15:45] = 1.0  # foot to the right
    return image


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


def test_marker_round_trip_on_non_square_monochrome1_16bit(tmp_path):
    rows, columns = 150, 110
    image = _marker_image(rows, columns)
    path = tmp_path / "marker.dcm"
    radiograph_dataset(image, photometric="MONOCHROME1", bits=16).save_as(path, enforce_file_format=True)
    radiograph = read_radiograph(path)
    truth = radiograph.pixels > radiograph.pixels.mean()
    np.testing.assert_array_equal(truth, image > 0.5)  # read back bright = dense
    x, geometry = prepare(radiograph.pixels, Preprocessing(input_size=64))
    # the preprocessed input itself, as a map on the working grid, must land back on the marker
    back = geometry.to_source(x[0, 0].numpy())
    assert back.shape == (rows, columns)
    assert np.abs(_centroid(back > 0.5) - _centroid(truth)).max() < 1.0
    assert ((back > 0.5) == truth).mean() > 0.97
    # a coarser layer grid (stride 4) is placed on the same frame
    coarse = F.avg_pool2d(x, 4)[0, 0].numpy()
    back_coarse = geometry.to_source(coarse)
    assert back_coarse.shape == (rows, columns)
    assert np.abs(_centroid(back_coarse > 0.5) - _centroid(truth)).max() < 3.0


def test_explanation_maps_are_returned_at_source_geometry(explainer, tmp_path):
    image = _marker_image(90, 70)
    path = tmp_path / "m.dcm"
    radiograph_dataset(image).save_as(path, enforce_file_format=True)
    explanation = explainer.explain(
        read_radiograph(path), findings=["Cardiomegaly"], methods=["gradcam", "saliency"]
    )
    for key in explanation.heatmaps:
        heat = explanation.map_at_source(key)
        assert heat.shape == (90, 70) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0 + 1e-6
    assert explanation.anatomy_at_source().shape == (3, 90, 70)


def test_to_source_rejects_non_square_maps():
    with pytest.raises(ValueError, match="square"):
        Letterbox.fit(10, 20, 8).to_source(np.zeros((4, 8)))


def test_a_map_at_display_size_is_the_source_map_averaged():
    """`to_size` samples the map where a picture of the source at that size has its pixel centres: for a
    map linear across the frame, the mean of each 2 x 2 block of the source-size map."""
    geometry = Letterbox.fit(400, 300, 64)
    ramp = np.add.outer(np.arange(64.0), 0.5 * np.arange(64.0)).astype(np.float32)
    at_source = geometry.to_source(ramp)
    np.testing.assert_array_equal(geometry.to_size(ramp, 400, 300), at_source)
    half = geometry.to_size(ramp, 200, 150)
    blocks = at_source.reshape(200, 2, 150, 2).mean(axis=(1, 3))
    inner = (slice(2, -2), slice(2, -2))  # the edge rows clamp at the map's border
    np.testing.assert_allclose(half[inner], blocks[inner], atol=1e-4)
