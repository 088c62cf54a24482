"""The colour tables the pages use: equal to matplotlib's inferno, and to a float blend within one level."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from cxrxai.dicom.sc import PageCanvas
from cxrxai.render import blend, colourise


def _maps() -> np.ndarray:
    rng = np.random.default_rng(3)
    edges = np.array([-0.5, 0.0, 1 / 256, 0.5, 255 / 256, 1.0, 1.5], dtype=np.float32)
    return np.concatenate(
        [rng.random(20000, dtype=np.float32), np.linspace(0, 1, 4097, dtype=np.float32), edges]
    )


def test_colourise_is_matplotlibs_inferno():
    values = _maps()
    expected = (colormaps["inferno"](np.clip(values, 0, 1))[..., :3] * 255).astype(np.uint8)
    assert np.array_equal(colourise(values), expected)


def test_blend_is_the_float_blend_within_one_level():
    values = _maps()
    levels = np.random.default_rng(4).integers(0, 256, values.shape).astype(np.uint8)
    alpha = 0.5 * np.clip(values, 0, 1)[..., None]
    expected = levels[..., None].astype(np.float32) * (1 - alpha) + colourise(values) * alpha
    blended = blend(levels, values)
    assert blended.shape == (*values.shape, 4) and not blended[..., 3].any()  # RGBX
    assert np.abs(blended[..., :3].astype(int) - expected.astype(np.uint8).astype(int)).max() <= 1
    cold = blend(levels, np.zeros_like(values))[..., :3]
    assert np.array_equal(cold, np.repeat(levels[..., None], 3, axis=-1))


def test_a_page_overlay_shows_the_grey_image_where_the_map_is_cold():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 4096, (300, 200)).astype(np.float32)
    heat = np.zeros((300, 200), np.float32)
    heat[100:150, 50:100] = 1.0
    canvas = PageCanvas(pixels, None)
    overlay = np.asarray(canvas.overlay(heat))
    columns, rows = canvas.main_size
    assert overlay.shape == (rows, columns, 3)
    cold = overlay[: rows // 4]  # above the hot square
    assert (cold[..., 0] == cold[..., 2]).all()  # grey: no colour where the map is 0
    hot = overlay[int(rows * 0.4), int(columns * 0.37)]
    assert hot[0] > hot[2] + 40  # inferno's warm end blended in


def test_a_pasted_overlay_label_is_the_drawn_one():
    """The page's outlined label is drawn once and pasted: the same pixels as drawing it in place."""
    from PIL import Image, ImageDraw

    from cxrxai.dicom import sc

    background = Image.fromarray(np.random.default_rng(6).integers(0, 256, (60, 260, 3), dtype=np.uint8))
    for text in ("Grad-CAM, decoder1", "Grad-CAM, bottleneck", "Grad-CAM, fused"):
        drawn, pasted = background.copy(), background.copy()
        ImageDraw.Draw(drawn).text(
            (8, 4), text, fill=(255, 255, 255), font=sc._font(18), stroke_width=2, stroke_fill=(0, 0, 0)
        )
        sc.draw_label(pasted, text, (8, 4))
        assert np.array_equal(np.asarray(drawn), np.asarray(pasted)), text
