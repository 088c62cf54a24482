"""overview.png: the radiograph with the top findings' maps and the layer-wise strip, encoder to decoder."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cxrxai.colours import INFERNO
from cxrxai.explanation import Explanation

TILE = 256
STRIP_LAYERS_ORDER = ("encoder", "bottleneck", "decoder")


def _inferno_index(values: np.ndarray, dtype: type[np.integer] = np.intp) -> np.ndarray:
    """matplotlib's binning of [0, 1] values into the 256 colours: entry floor(256 v), 1 in the last."""
    return np.minimum((np.clip(values, 0, 1) * 256).astype(dtype), 255)


@lru_cache(maxsize=1)
def _blend_table() -> np.ndarray:
    """(grey level x 256 + colour entry) -> RGBX packed in a uint32: grey g under inferno entry k at
    opacity 0.5 k / 255, with a fourth byte of padding so one lookup fetches a whole pixel."""
    grey_level = np.arange(256, dtype=np.float32)[:, None, None]
    alpha = (0.5 * np.arange(256) / 255).astype(np.float32)[None, :, None]
    colours = INFERNO.astype(np.float32)[None]
    rgbx = np.zeros((256 * 256, 4), dtype=np.uint8)
    rgbx[:, :3] = (grey_level * (1 - alpha) + colours * alpha).astype(np.uint8).reshape(-1, 3)
    return rgbx.view(np.uint32).ravel()


def blend(grey_levels: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """uint8 RGBX (rows, columns, 4; the fourth byte 0): grey levels (uint8) with a [0, 1] map blended in
    its inferno colour, opacity half the map's value. One lookup of a whole pixel in a 65536-entry uint32
    table instead of colouring and blending in float: the pages blend about 80 maps per image. RGBX
    because PIL reads four-byte pixels from the array as they are (`rgbx_image`), where a three-byte view
    of them is first copied by numpy, and `np.take` along the rows of a (65536, 3) table is slower. The
    opacity steps by 1/510, the colour by matplotlib's own bins."""
    entry = _inferno_index(heat, np.uint16)  # 16 bits: the table index is grey level x 256 + entry
    rgbx = _blend_table()[(grey_levels.astype(np.uint16) << 8) | entry]
    return rgbx.view(np.uint8).reshape(*grey_levels.shape, 4)


def rgbx_image(rgbx: np.ndarray) -> Image.Image:
    """An RGB picture of `blend`'s RGBX pixels."""
    return Image.fromarray(rgbx).convert("RGB")


def colourise(values: np.ndarray) -> np.ndarray:
    """inferno colour map (perceptually uniform) of [0, 1] values -> uint8 RGB. A table lookup with
    matplotlib's own binning, so the colours equal `colormaps["inferno"]`'s; the lookup takes half the
    time of calling the colour map (the pages colour about 80 maps per image)."""
    return INFERNO[_inferno_index(values)]


def unit_window(image: np.ndarray) -> np.ndarray:
    """The image's 0.5-99.5 percentile range stretched to [0, 1] (float32), as a reader first sees it."""
    lo, hi = np.percentile(image, (0.5, 99.5))
    return np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1).astype(np.float32)


def grey_levels(image: np.ndarray) -> np.ndarray:
    """The image windowed (`unit_window`) to uint8 grey levels."""
    return (unit_window(image) * 255).astype(np.uint8)


def grey(image: np.ndarray) -> np.ndarray:
    return np.repeat(grey_levels(image)[..., None], 3, axis=2)


def reduce_to(values: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """A plane resampled to `size` (columns, rows) before any colouring: a picture shows at most 1024
    pixels a side, so a 3000 x 3000 detector image is coloured at display size, not at its own (measured:
    25x faster per page). Masks take the nearest pixel, grey values and maps an area average."""
    if values.shape[1] == size[0] and values.shape[0] == size[1]:
        return values
    if nearest:
        image = Image.fromarray(values.astype(np.uint8))
        return np.asarray(image.resize(size, Image.Resampling.NEAREST)).astype(bool)
    image = Image.fromarray(np.asarray(values, dtype=np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.BOX))


def _tile(base: np.ndarray, heat: np.ndarray | None, caption: str) -> Image.Image:
    """TILE pixels high, keeping the source aspect ratio, with a caption bar."""
    rgb = base.astype(np.float32)
    if heat is not None:
        alpha = 0.55 * np.clip(heat, 0, 1)[..., None]
        rgb = rgb * (1 - alpha) + colourise(heat).astype(np.float32) * alpha
    width = max(1, round(TILE * base.shape[1] / base.shape[0]))
    tile = Image.fromarray(rgb.astype(np.uint8)).resize((width, TILE), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(tile)
    draw.rectangle((0, 0, width, 14), fill=(0, 0, 0))
    draw.text((3, 1), caption[:42], fill=(255, 255, 255))
    return tile


def layer_order(layer: str) -> tuple[int, int]:
    family = next(i for i, prefix in enumerate(STRIP_LAYERS_ORDER) if layer.startswith(prefix))
    depth = int(layer[len(STRIP_LAYERS_ORDER[family]) :] or 0)
    return family, depth if family == 0 else -depth


def write_overview(explanation: Explanation, pixels: np.ndarray, path: str | Path, top: int = 3) -> None:
    """Row 1: the radiograph and the fused (or best available) map of the `top` most probable findings.
    Row 2: Grad-CAM of the most probable finding at every layer, encoder to decoder."""
    # every tile is drawn at its own size: the radiograph area-averaged, the maps sampled there
    tile_rows, tile_columns = TILE, max(1, round(TILE * pixels.shape[1] / pixels.shape[0]))
    base = grey(reduce_to(pixels, (tile_columns, tile_rows)))
    ranked = sorted(
        (f for f in explanation.findings if f.name != "No Finding"), key=lambda f: f.probability, reverse=True
    )[:top]
    row1 = [_tile(base, None, f"{explanation.model['name']}  CTR {explanation.ctr or float('nan'):.2f}")]
    for finding in ranked:
        key = _best_key(explanation, finding.name)
        heat = explanation.map_at_size(key, tile_rows, tile_columns) if key else None
        row1.append(
            _tile(base, heat, f"{finding.name} {finding.probability:.2f} {key.split('/')[0] if key else ''}")
        )
    row2: list[Image.Image] = []
    if ranked:
        layers = sorted(
            {
                h.layer
                for h in explanation.heatmaps.values()
                if h.method == "gradcam" and h.target == ranked[0].name
            }
            - {"fused"},
            key=layer_order,
        )
        for layer in layers:
            heat = explanation.map_at_size(f"gradcam/{layer}/{ranked[0].name}", tile_rows, tile_columns)
            row2.append(_tile(base, heat, layer))
    width = row1[0].width
    columns = max(len(row1), len(row2), 1)
    canvas = Image.new("RGB", (columns * width, TILE * (2 if row2 else 1) + 16), (0, 0, 0))
    for i, tile in enumerate(row1):
        canvas.paste(tile, (i * width, 0))
    for i, tile in enumerate(row2):
        canvas.paste(tile, (i * width, TILE))
    _save_with_disclaimer(canvas, path)


def _save_with_disclaimer(canvas: Image.Image, path: str | Path) -> None:
    """Every figure we write carries the not-for-diagnosis line in its bottom 16 pixels."""
    ImageDraw.Draw(canvas).text(
        (3, canvas.height - 14), "AI-generated - not for diagnostic use", fill=(255, 200, 0)
    )
    canvas.save(path)


def _best_key(explanation: Explanation, finding: str) -> str | None:
    for method, layer in (
        ("gradcam", "fused"),
        ("gradcam", "decoder1"),
        ("saliency", "input"),
        ("crm", "decoder1"),
    ):
        key = f"{method}/{layer}/{finding}"
        if key in explanation.heatmaps:
            return key
    return next((k for k, h in explanation.heatmaps.items() if h.target == finding), None)


ANATOMY_COLOURS = {"Right Lung": (0, 200, 90), "Left Lung": (40, 140, 255), "Heart": (255, 70, 70)}


def write_anatomy_overlay(explanation: Explanation, pixels: np.ndarray, path: str | Path) -> None:
    """The radiograph beside itself with the lung and heart masks tinted and outlined, at source
    resolution: the figure a reader judges the segmentation by (`cxrxai bundle check-anatomy`)."""
    from scipy import ndimage

    base = grey(pixels)
    over = base.astype(np.float32)
    masks = explanation.anatomy_at_source()
    for index, name in enumerate(explanation.anatomy_names):
        colour = np.array(ANATOMY_COLOURS.get(name, (255, 255, 0)), np.float32)
        mask = masks[index]
        over[mask] = 0.7 * over[mask] + 0.3 * colour
        edge = mask & ~ndimage.binary_erosion(mask, iterations=max(1, pixels.shape[0] // 256))
        over[edge] = colour
    tiles = [_tile(base, None, "radiograph"), _tile(over, None, " / ".join(explanation.anatomy_names))]
    canvas = Image.new("RGB", (sum(t.width for t in tiles), TILE + 16), (0, 0, 0))
    for i, tile in enumerate(tiles):
        canvas.paste(tile, (i * tiles[0].width, 0))
    _save_with_disclaimer(canvas, path)
