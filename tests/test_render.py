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


def test_pasted_text_is_the_drawn_text():
    """Summary-page text is pasted through masks drawn once: the same pixels as drawing it in place."""
    from PIL import Image, ImageDraw

    from cxrxai.dicom import sc

    background = Image.fromarray(np.random.default_rng(7).integers(0, 256, (60, 400, 3), dtype=np.uint8))
    for text, size, colour in (("Enlarged Cardiomediastinum", 22, (255, 200, 0)), ("0.047", 22, (9, 9, 9)),
                               ("Cardiothoracic ratio: 0.52", 14, (255, 255, 255))):  # fmt: skip
        drawn, pasted = background.copy(), background.copy()
        ImageDraw.Draw(drawn).text((24, 10), text, fill=colour, font=sc._font(size))
        sc.write_text(pasted, text, (24, 10), colour, size)
        assert np.array_equal(np.asarray(drawn), np.asarray(pasted)), text
        right = sc._font(size).getbbox(text)[2]
        pasted = background.copy()
        sc.write_text(pasted, text, (24 + right, 10), colour, size, right=True)
        assert np.array_equal(np.asarray(drawn), np.asarray(pasted)), f"{text} right-aligned"


def test_summary_page_columns_line_up():
    """Probabilities and thresholds end at their column's edge on every row, whatever the finding's name
    (space padding in a proportional font left them ragged in the viewers)."""
    from cxrxai.dicom import sc
    from cxrxai.explanation import FindingPrediction
    from cxrxai.labels import FINDINGS

    chances = np.random.default_rng(3).random(len(FINDINGS))
    findings = [FindingPrediction(name, float(p), 0.5) for name, p in zip(FINDINGS, chances, strict=True)]
    page = np.asarray(sc.summary_page(findings, 0.48, "model 1")).max(axis=2)
    _, probability_right, threshold_right, decision_x = sc.SUMMARY_COLUMNS
    line = 34
    for row in range(len(findings) + 1):
        band = page[sc.BAR + row * line : sc.BAR + row * line + 28]
        for right in (probability_right, threshold_right):
            ink = np.nonzero(band[:, right - 150 : right + 20].max(axis=0) > 64)[0]
            assert right - 6 <= right - 150 + ink.max() <= right, (row, right)  # glyphs end inside their box
        ink = np.nonzero(band[:, decision_x - 20 : decision_x + 150].max(axis=0) > 64)[0]
        assert decision_x - 20 + ink.min() in range(decision_x, decision_x + 4), row
