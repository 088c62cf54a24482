"""Secondary Capture pages for PACS viewers that show nothing but pictures.

Per selected finding: the radiograph with its heatmap (inferno, a perceptually uniform colour map, with a
legend), the lung contour, the probability and decision, and the layer-wise strip from encoder to decoder.
One summary page lists all 14 findings. Every page burns in "AI-generated - not for diagnostic use"
(Burned In Annotation YES). New objects only: the source pixels are never altered.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from cxrxai.dicom.common import DISCLAIMER, SERIES, Device, finish_result, result_uid
from cxrxai.render import colourise, grey
from cxrxai.results import FindingPrediction

PAGE_WIDTH = 1024
BAR = 48
LEGEND = 56
CONTOUR = (0, 255, 255)
WARNING = (255, 200, 0)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _contour(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask (mask minus its 4-neighbour erosion)."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def _display_size(shape: tuple[int, ...], width: int, max_height: int) -> tuple[int, int]:
    """(columns, rows) of an image of `shape` fitted into width x max_height, aspect kept."""
    rows, columns = shape[:2]
    scale = min(width / columns, max_height / rows)
    return max(1, round(columns * scale)), max(1, round(rows * scale))


def _reduce(values: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """A plane resampled to `size` (columns, rows) before any colouring: a page shows at most 1024
    pixels a side, so a 3000 x 3000 detector image is coloured at display size, not at its own (measured:
    25x faster per page). Masks take the nearest pixel, grey values and maps an area average."""
    if values.shape[1] == size[0] and values.shape[0] == size[1]:
        return values
    if nearest:
        image = Image.fromarray(values.astype(np.uint8))
        return np.asarray(image.resize(size, Image.Resampling.NEAREST)).astype(bool)
    image = Image.fromarray(np.asarray(values, dtype=np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.BOX))


def _overlay(
    pixels: np.ndarray,
    heat: np.ndarray | None,
    lungs: np.ndarray | None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The radiograph (grey), the map blended in with the inferno colours, the lung contour in cyan; at
    `size` (columns, rows) when given, else at the image's own size."""
    if size is not None:
        pixels = _reduce(pixels, size)
        heat = None if heat is None else _reduce(heat, size)
        lungs = None if lungs is None else _reduce(lungs, size, nearest=True)
    rgb = grey(pixels).astype(np.float32)
    if heat is not None:
        alpha = 0.5 * np.clip(heat, 0, 1)[..., None]
        rgb = rgb * (1 - alpha) + colourise(heat).astype(np.float32) * alpha
    if lungs is not None:
        edge = _contour(lungs.astype(bool))
        rgb[edge] = CONTOUR
    return rgb.astype(np.uint8)


def _legend(height: int) -> Image.Image:
    """Vertical colour bar: top = highest relevance."""
    ramp = np.linspace(1, 0, height)[:, None].repeat(16, axis=1)
    bar = Image.new("RGB", (LEGEND, height), (0, 0, 0))
    bar.paste(Image.fromarray(colourise(ramp)), (4, 0))
    draw = ImageDraw.Draw(bar)
    draw.text((22, 0), "high", fill=(255, 255, 255), font=_font(12))
    draw.text((22, height - 14), "low", fill=(255, 255, 255), font=_font(12))
    return bar


def _page(title: str, body: Image.Image) -> np.ndarray:
    page = Image.new("RGB", (PAGE_WIDTH, BAR + body.height + BAR), (0, 0, 0))
    page.paste(body, ((PAGE_WIDTH - body.width) // 2, BAR))
    draw = ImageDraw.Draw(page)
    draw.text((12, 10), title, fill=(255, 255, 255), font=_font(24))
    draw.text((12, page.height - BAR + 10), DISCLAIMER, fill=WARNING, font=_font(24))
    return np.asarray(page)


def strip_tile_size(shape: tuple[int, ...], count: int) -> tuple[int, int]:
    """(rows, columns) of each of `count` layer tiles under a finding page's overlay: a map sampled at
    this size is drawn as it is."""
    columns, rows = _display_size(shape, PAGE_WIDTH // max(count, 1) - 4, 256)
    return rows, columns


def finding_page(
    pixels: np.ndarray,
    finding: FindingPrediction,
    heat: tuple[str, np.ndarray],
    lungs: np.ndarray | None,
    strip: Sequence[tuple[str, np.ndarray]],
    model: str,
) -> np.ndarray:
    """RGB page: overlay of `heat` (layer, map) + legend, then the layer strip (encoder to decoder); maps
    at any size covering the source (`strip_tile_size` for the strip's draws without resampling)."""
    heat_layer, heat_map = heat
    main_size = _display_size(pixels.shape, PAGE_WIDTH - LEGEND, 768)
    main = Image.fromarray(_overlay(pixels, heat_map, lungs, main_size))
    tile_width = PAGE_WIDTH // max(len(strip), 1)
    rows, columns = strip_tile_size(pixels.shape, len(strip))
    small = _reduce(pixels, (columns, rows))  # once for every tile
    tiles = [(Image.fromarray(_overlay(small, h, None, (columns, rows))), layer) for layer, h in strip]
    strip_height = max((t.height for t, _ in tiles), default=0) + (20 if tiles else 0)
    body = Image.new("RGB", (PAGE_WIDTH, main.height + strip_height), (0, 0, 0))
    body.paste(main, ((PAGE_WIDTH - LEGEND - main.width) // 2, 0))
    body.paste(_legend(main.height), (PAGE_WIDTH - LEGEND, 0))
    draw = ImageDraw.Draw(body)
    # outlined: the label lies on the radiograph where it is wide (a bright collimation edge hid white text)
    label = f"Grad-CAM, {heat_layer}"
    draw.text((8, 4), label, fill=(255, 255, 255), font=_font(18), stroke_width=2, stroke_fill=(0, 0, 0))
    for i, (tile, layer) in enumerate(tiles):
        body.paste(tile, (i * tile_width + 2, main.height + 20))
        draw.text((i * tile_width + 4, main.height + 2), layer, fill=(255, 255, 255), font=_font(14))
    decision = "PRESENT" if finding.present else "absent"
    title = f"{finding.name}: p = {finding.probability:.2f} (threshold {finding.threshold:.2f}) {decision}"
    title += f" - {model}"
    return _page(title, body)


def summary_page(findings: Sequence[FindingPrediction], ctr: float | None, model: str) -> np.ndarray:
    """RGB page listing every finding with probability, threshold and decision, and the CTR."""
    line = 34
    body = Image.new("RGB", (PAGE_WIDTH, line * (len(findings) + 3)), (0, 0, 0))
    draw = ImageDraw.Draw(body)
    font = _font(22)
    draw.text(
        (24, 0),
        f"{'Finding':<30}{'Probability':>12}{'Threshold':>12}   Decision",
        fill=(200, 200, 200),
        font=font,
    )
    for i, f in enumerate(sorted(findings, key=lambda f: f.probability, reverse=True), start=1):
        colour = WARNING if f.present else (255, 255, 255)
        text = (
            f"{f.name:<30}{f.probability:>12.3f}{f.threshold:>12.2f}   {'PRESENT' if f.present else 'absent'}"
        )
        draw.text((24, i * line), text, fill=colour, font=font)
    ratio = "not measured" if ctr is None else f"{ctr:.2f}"
    draw.text(
        (24, (len(findings) + 1) * line), f"Cardiothoracic ratio: {ratio}", fill=(255, 255, 255), font=font
    )
    return _page(f"CXR-XAI findings - {model}", body)


def build_sc(
    source: Dataset,
    page: np.ndarray,
    device: Device,
    role: str,
    number: int,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> hd.sc.SCImage:
    """One RGB Secondary Capture page in the overlay series of the source's study."""
    uid = str(source.SOPInstanceUID)
    orientation = source.get("PatientOrientation")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=page,
        # RGB pixels; JPEG 2000 lossless stores them with its reversible colour transform
        photometric_interpretation="YBR_RCT" if transfer_syntax == JPEG2000Lossless else "RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=result_uid(uid, device.content_hash, "sc", "series"),
        series_number=SERIES["sc"][0],
        sop_instance_uid=result_uid(uid, device.content_hash, "sc", role),
        instance_number=number,
        manufacturer=device.manufacturer,
        patient_orientation=tuple(orientation) if orientation and len(orientation) == 2 else ("L", "F"),
        transfer_syntax_uid=transfer_syntax,
    )
    # highdicom needs an orientation to build the object; a page without one in its source says none.
    sc.PatientOrientation = list(orientation) if orientation and len(orientation) == 2 else []
    sc.BurnedInAnnotation = "YES"
    sc.DerivationDescription = f"{role}; {DISCLAIMER}"
    finish_result(sc, source, device, "sc")
    return sc
