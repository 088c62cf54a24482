"""Secondary Capture pages for PACS viewers that show nothing but pictures.

Per selected finding: the radiograph with its heatmap (inferno, a perceptually uniform colour map, with a
legend), the lung contour, the probability and decision, and the layer-wise strip from encoder to decoder.
One summary page lists all 14 findings. Every page burns in "AI-generated - not for diagnostic use"
(Burned In Annotation YES). New objects only: the source pixels are never altered.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from cxrxai.dicom.common import DISCLAIMER, SERIES, Device, finish_result, result_uid
from cxrxai.explanation import FindingPrediction
from cxrxai.render import blend, colourise, grey_levels, reduce_to, rgbx_image

PAGE_WIDTH = 1024
BAR = 48
LEGEND = 56
STRIP_LABELS = 20  # the height of the layer-name row above a finding page's strip
CONTOUR = (0, 255, 255)
WARNING = (255, 200, 0)


@lru_cache(maxsize=8)
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


class PageCanvas:
    """What every finding page of one radiograph shares, made once: the radiograph in grey at the main
    overlay's size with the lung contour (cyan), and in grey at the layer strip's tile size. A page then
    only colours and blends its own maps; the grey and contour work, done per page, would be most of a
    page's time."""

    def __init__(self, pixels: np.ndarray, lungs: np.ndarray | None) -> None:
        self.shape = pixels.shape
        self._pixels = pixels
        self.main_size = _display_size(pixels.shape, PAGE_WIDTH - LEGEND, 768)
        self.main = grey_levels(reduce_to(pixels, self.main_size))
        # the contour's pixel indices: assigning through them is about 15x faster than through a boolean mask
        self.edge: tuple[np.ndarray, ...] | None = None
        if lungs is not None:
            self.edge = np.nonzero(_contour(reduce_to(lungs, self.main_size, nearest=True)))
        self._tiles: dict[tuple[int, int], np.ndarray] = {}

    def overlay(self, heat: np.ndarray) -> Image.Image:
        """The main picture: radiograph, map (any size covering the source; at `main_size` it is drawn as
        it is), lung contour."""
        rgbx = blend(self.main, reduce_to(heat, self.main_size))
        if self.edge is not None:
            rows, columns = self.edge
            rgbx[rows, columns, :3] = CONTOUR
        return rgbx_image(rgbx)

    def tile(self, heat: np.ndarray, count: int) -> Image.Image:
        """One of `count` strip tiles: the map (sampled at `strip_tile_size`, or resampled to it) over
        the radiograph."""
        rows, columns = strip_tile_size(self.shape, count)
        if (rows, columns) not in self._tiles:
            self._tiles[rows, columns] = grey_levels(reduce_to(self._pixels, (columns, rows)))
        return rgbx_image(blend(self._tiles[rows, columns], reduce_to(heat, (columns, rows))))


@lru_cache(maxsize=4)
def _legend(height: int) -> Image.Image:
    """Vertical colour bar: top = highest relevance. Shared by the pages of one size: only pasted."""
    ramp = np.linspace(1, 0, height)[:, None].repeat(16, axis=1)
    bar = Image.new("RGB", (LEGEND, height), (0, 0, 0))
    bar.paste(Image.fromarray(colourise(ramp)), (4, 0))
    draw = ImageDraw.Draw(bar)
    draw.text((22, 0), "high", fill=(255, 255, 255), font=_font(12))
    draw.text((22, height - 14), "low", fill=(255, 255, 255), font=_font(12))
    return bar


@lru_cache(maxsize=1)
def _footer() -> Image.Image:
    """The disclaimer bar under every page: drawn once, pasted (text rendering is most of a page's
    drawing time)."""
    bar = Image.new("RGB", (PAGE_WIDTH, BAR), (0, 0, 0))
    ImageDraw.Draw(bar).text((12, 10), DISCLAIMER, fill=WARNING, font=_font(24))
    return bar


@lru_cache(maxsize=8)
def _strip_labels(layers: tuple[str, ...], tile_width: int) -> Image.Image:
    """The row of layer names above a finding page's strip: the same on every page of a radiograph."""
    row = Image.new("RGB", (PAGE_WIDTH, STRIP_LABELS), (0, 0, 0))
    draw = ImageDraw.Draw(row)
    for i, layer in enumerate(layers):
        draw.text((i * tile_width + 4, 2), layer, fill=(255, 255, 255), font=_font(14))
    return row


def draw_label(picture: Image.Image, text: str, at: tuple[int, int]) -> None:
    """Write `text` on `picture` at `at`: white letters in a black outline, legible on any part of a
    radiograph (a bright collimation edge hid white text). Pasted through `write_text`'s masks, drawn
    once per text: drawing outlined text took 1 ms a page."""
    write_text(picture, text, at, (0, 0, 0), 18, stroke=2)
    write_text(picture, text, at, (255, 255, 255), 18)


def _page(title: str, body: Image.Image) -> Image.Image:
    page = Image.new("RGB", (PAGE_WIDTH, BAR + body.height + BAR), (0, 0, 0))
    page.paste(body, ((PAGE_WIDTH - body.width) // 2, BAR))
    ImageDraw.Draw(page).text((12, 10), title, fill=(255, 255, 255), font=_font(24))
    page.paste(_footer(), (0, page.height - BAR))
    return page


def strip_tile_size(shape: tuple[int, ...], count: int) -> tuple[int, int]:
    """(rows, columns) of each of `count` layer tiles under a finding page's overlay: a map sampled at
    this size is drawn as it is."""
    columns, rows = _display_size(shape, PAGE_WIDTH // max(count, 1) - 4, 256)
    return rows, columns


def finding_page(
    canvas: PageCanvas,
    finding: FindingPrediction,
    heat: tuple[str, np.ndarray],
    strip: Sequence[tuple[str, np.ndarray]],
    model: str,
) -> Image.Image:
    """RGB page: overlay of `heat` (layer, map) + legend, then the layer strip (encoder to decoder); maps
    at any size covering the source (`strip_tile_size` for the strip's draws without resampling)."""
    heat_layer, heat_map = heat
    main = canvas.overlay(heat_map)
    tile_width = PAGE_WIDTH // max(len(strip), 1)
    tiles = [(canvas.tile(h, len(strip)), layer) for layer, h in strip]
    strip_height = max((t.height for t, _ in tiles), default=0) + (STRIP_LABELS if tiles else 0)
    body = Image.new("RGB", (PAGE_WIDTH, main.height + strip_height), (0, 0, 0))
    body.paste(main, ((PAGE_WIDTH - LEGEND - main.width) // 2, 0))
    body.paste(_legend(main.height), (PAGE_WIDTH - LEGEND, 0))
    draw_label(body, f"Grad-CAM, {heat_layer}", (8, 4))
    if tiles:
        body.paste(_strip_labels(tuple(layer for _, layer in tiles), tile_width), (0, main.height))
    for i, (tile, _) in enumerate(tiles):
        body.paste(tile, (i * tile_width + 2, main.height + STRIP_LABELS))
    decision = "PRESENT" if finding.present else "absent"
    title = f"{finding.name}: p = {finding.probability:.2f} (threshold {finding.threshold:.2f}) {decision}"
    title += f" - {model}"
    return _page(title, body)


# x of the summary's columns: the finding's left edge, the probability's and the threshold's right edges
# (numbers right-aligned), the decision's left edge
SUMMARY_COLUMNS = (24, 480, 640, 700)


def summary_page(findings: Sequence[FindingPrediction], ctr: float | None, model: str) -> Image.Image:
    """RGB page listing every finding with probability, threshold and decision, and the CTR. Each column
    is written at its own x position (numbers right-aligned): padding with spaces does not line columns
    up in a proportional font."""
    line, size = 34, 22
    body = Image.new("RGB", (PAGE_WIDTH, line * (len(findings) + 3)), (0, 0, 0))
    name_x, probability_right, threshold_right, decision_x = SUMMARY_COLUMNS
    header = (200, 200, 200)
    write_text(body, "Finding", (name_x, 0), header, size)
    write_text(body, "Probability", (probability_right, 0), header, size, right=True)
    write_text(body, "Threshold", (threshold_right, 0), header, size, right=True)
    write_text(body, "Decision", (decision_x, 0), header, size)
    for i, f in enumerate(sorted(findings, key=lambda f: f.probability, reverse=True), start=1):
        colour = WARNING if f.present else (255, 255, 255)
        write_text(body, f.name, (name_x, i * line), colour, size)
        write_text(body, f"{f.probability:.3f}", (probability_right, i * line), colour, size, right=True)
        write_text(body, f"{f.threshold:.2f}", (threshold_right, i * line), colour, size, right=True)
        write_text(body, "PRESENT" if f.present else "absent", (decision_x, i * line), colour, size)
    ratio = "not measured" if ctr is None else f"{ctr:.2f}"
    write_text(
        body, f"Cardiothoracic ratio: {ratio}", (name_x, (len(findings) + 1) * line), (255, 255, 255), size
    )
    return _page(f"CXR-XAI findings - {model}", body)


def write_text(
    picture: Image.Image,
    text: str,
    at: tuple[int, int],
    colour: tuple[int, int, int],
    size: int,
    right: bool = False,
    stroke: int = 0,
) -> None:
    """Write `text` on `picture` as `ImageDraw.text` would at `at` (or ending at `at[0]` with `right`;
    `stroke` pixels thicker with `stroke`), by pasting its mask drawn once per text, size and stroke: the
    summary's names, thresholds and decisions and the pages' labels repeat on every image, and text
    rendering was most of the summary page's time."""
    (left, top, right_edge), mask = _text_mask(text, size, stroke)
    x = at[0] - right_edge if right else at[0]
    picture.paste(colour, (x + left, at[1] + top), mask)


@lru_cache(maxsize=1024)
def _text_mask(text: str, size: int, stroke: int = 0) -> tuple[tuple[int, int, int], Image.Image]:
    """The mask's offset from the text's origin, the ink's right edge from that origin, and the mask."""
    font = _font(size)
    left, top, right, bottom = (int(v) for v in font.getbbox(text, stroke_width=stroke))
    left, top = min(left, 0), min(top, 0)
    mask = Image.new("L", (right - left, bottom - top))
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return (left, top, right), mask


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


class PageSeries:
    """The Secondary Capture pages of one radiograph. The first page is built by `build_sc`; in Explicit
    VR Little Endian each later page is a new dataset sharing the first one's unchanged elements, with
    its own UID, number, role, size and pixels. Why: highdicom's per-attribute IOD checks and its copies
    of patient and study, the same for every page, took 4.4 ms a page against 0.3 ms for the copy (2
    cores). Other transfer syntaxes build every page with highdicom, which also encodes its frames."""

    def __init__(self, source: Dataset, device: Device, transfer_syntax: str = ExplicitVRLittleEndian):
        self._source = source
        self._device = device
        self._syntax = transfer_syntax
        self._first: Dataset | None = None

    def add(self, page: Image.Image, role: str, number: int) -> Dataset:
        """The Secondary Capture of `page` (an RGB picture) as instance `number`, in role `role`."""
        if page.mode != "RGB":
            raise ValueError(f"a page is an RGB picture, got mode {page.mode}")
        if self._first is None or self._syntax != ExplicitVRLittleEndian:
            made = build_sc(self._source, np.asarray(page), self._device, role, number, self._syntax)
            self._first = self._first or made
            return made
        return self._like_first(page, role, number)

    def _like_first(self, page: Image.Image, role: str, number: int) -> Dataset:
        first = self._first
        assert first is not None
        uid = result_uid(str(self._source.SOPInstanceUID), self._device.content_hash, "sc", role)
        pixels = page.tobytes()  # row by row, R G B: Planar Configuration 0; an odd length is padded
        made = Dataset(dict(first.items()))  # a new element map: replacing an element leaves `first` as is
        for keyword, vr, value in (
            ("SOPInstanceUID", "UI", uid),
            ("InstanceNumber", "IS", number),
            ("Rows", "US", page.height),
            ("Columns", "US", page.width),
            ("DerivationDescription", "ST", f"{role}; {DISCLAIMER}"),
            ("PixelData", first["PixelData"].VR, pixels),
        ):
            made[keyword] = DataElement(keyword, vr, value)
        made.file_meta = FileMetaDataset(dict(first.file_meta.items()))
        made.file_meta["MediaStorageSOPInstanceUID"] = DataElement("MediaStorageSOPInstanceUID", "UI", uid)
        return made
