"""Write every DICOM result object of one explained radiograph: anatomy SEG, heat-map SEG (and on request
the per-layer SEG), Secondary Capture pages, a presentation state (GSPS), and the SR that references
them all.

The SR is the result; every other object is optional. One that cannot be made for an image (a header
one writer cannot follow) is left out of the SR's references with its reason, and the others are still
written: a radiologist gets the findings and every overlay that could be made, and the CLI or the node
reports what is missing.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from cxrxai.dicom.common import Device, check_reference_uids, writers_view
from cxrxai.dicom.encoding import DEFAULT_TRANSFER_SYNTAX, transfer_syntax_uid
from cxrxai.dicom.gsps import build_gsps
from cxrxai.dicom.outlines import HOT_LEVEL, OUTLINE_GRID, hot_outline, outline_grid, outlines, to_image
from cxrxai.dicom.result_writer import write_result
from cxrxai.dicom.sc import PageCanvas, PageSeries, finding_page, strip_tile_size, summary_page
from cxrxai.dicom.seg import HeatmapLayer, build_anatomy_seg, build_heatmap_seg, build_layer_maps_seg
from cxrxai.dicom.sr import FindingOutline, build_sr
from cxrxai.errors import CXRXAIError
from cxrxai.explanation import DISPLAYED_METHOD, Explanation, FindingPrediction
from cxrxai.labels import LUNG_CHANNELS
from cxrxai.render import layer_order

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeatmapSelection:
    """Which findings get heatmap segments and pages: 'above-threshold' (default), 'top-K', or 'all'."""

    mode: str = "above-threshold"

    def __post_init__(self) -> None:
        top_k = self.mode.startswith("top-") and self.mode[4:].isdigit()
        if self.mode not in ("all", "above-threshold") and not top_k:
            raise ValueError(
                f"heatmap selection {self.mode!r}: use above-threshold, top-K (e.g. top-3) or all"
            )

    def choose(self, findings: list[FindingPrediction]) -> list[FindingPrediction]:
        if self.mode == "all":
            return list(findings)
        if self.mode == "above-threshold":
            return [f for f in findings if f.present]
        return sorted(findings, key=lambda f: f.probability, reverse=True)[: int(self.mode[4:])]


def device_of(explanation: Explanation) -> Device:
    model = explanation.model
    return Device(
        name=str(model["name"]), version=str(model["version"]), content_hash=str(model["content_hash"])
    )


def display_order(explanation: Explanation, finding: str) -> list[str]:
    """The Grad-CAM layers of a finding: the model's display layer (the fused map unless its bundle's
    evaluation found a layer that overlaps the finding better), then every other layer from encoder to
    decoder. The first one is the page's overlay, the presentation state's and the heat-map SEG's."""
    layers = {
        h.layer for h in explanation.heatmaps.values() if h.method == DISPLAYED_METHOD and h.target == finding
    }
    preferred = str(explanation.model.get("display_layers", {}).get(finding, "fused"))
    leading = list(dict.fromkeys(layer for layer in (preferred, "fused") if layer in layers))
    return leading + sorted(layers - set(leading), key=layer_order)


def heatmap_layers(
    explanation: Explanation, finding: str, size: tuple[int, int] | None = None, first_only: bool = False
) -> list[HeatmapLayer]:
    """A finding's maps in `display_order`, at the source geometry, or at `size` (rows, columns) covering
    the source for a picture; with `first_only`, the display layer's alone."""
    rows, columns = size or (explanation.geometry.source_rows, explanation.geometry.source_columns)
    layers = display_order(explanation, finding)
    return [
        HeatmapLayer(
            finding,
            DISPLAYED_METHOD,
            layer,
            explanation.map_at_size(f"{DISPLAYED_METHOD}/{layer}/{finding}", rows, columns),
        )
        for layer in (layers[:1] if first_only else layers)
    ]


def strip_layers(layers: list[str]) -> list[str]:
    """A page's layer strip: every layer but the fused one, from the shallowest encoder level to the last
    decoder level, whichever layer the page leads with."""
    return sorted((layer for layer in layers if layer != "fused"), key=layer_order)


@dataclass
class ResultObjects:
    """The objects made for one image, SR last, and one line for each optional object that could not be
    made ("presentation state not made (TypeError: ...)")."""

    datasets: list[Dataset]
    missing: list[str] = field(default_factory=list)


def _optional(what: str, missing: list[str], build: Callable[[], Dataset]) -> list[Dataset]:
    """[the optional object], or [] with the reason recorded in `missing`."""
    try:
        return [build()]
    except Exception as exc:  # reported to the user or the node through `missing`, never dropped
        LOG.debug("%s not made", what, exc_info=True)
        text = " ".join(str(exc).split())[:200]
        missing.append(f"{what} not made ({type(exc).__name__}{': ' + text if text else ''})")
        return []


def build_dicom_results(
    explanation: Explanation,
    source: Dataset,
    pixels: np.ndarray,
    selection: HeatmapSelection = HeatmapSelection(),
    transfer_syntax: str = DEFAULT_TRANSFER_SYNTAX,
    layer_maps: bool = False,
) -> ResultObjects:
    """SEG (anatomy), SEG (heat-map levels, when any finding is selected), SEG (every layer's map, when
    `layer_maps`), SC pages, GSPS, then the SR that references those that could be made. SEG and pages
    in `transfer_syntax` (a name of `cxrxai.dicom.encoding`). Raises UnsupportedInputError, before any
    work, when the source lacks a UID the objects must reference."""
    check_reference_uids(source)
    with warnings.catch_warnings():
        # highdicom warns when a person name it copies from the source has one component (a Referring
        # Physician's Name "ward"): the source's own value, written back unchanged; nothing to act on
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        return _build(explanation, source, pixels, selection, transfer_syntax, layer_maps)


def _build(
    explanation: Explanation,
    source: Dataset,
    pixels: np.ndarray,
    selection: HeatmapSelection,
    transfer_syntax: str,
    layer_maps: bool,
) -> ResultObjects:
    syntax = transfer_syntax_uid(transfer_syntax)
    source = writers_view(source)
    device = device_of(explanation)
    missing: list[str] = []
    masks = explanation.anatomy_at_source()
    segmentations = _optional(
        "lung and heart SEG", missing, lambda: build_anatomy_seg(source, masks, device, syntax)
    )
    chosen = selection.choose(explanation.findings)
    # the display layer's map of each chosen finding on a grid of at most OUTLINE_GRID pixels a side, for
    # the heat-map SEG's bands and the pages' main overlays (a page is at most that wide); only the
    # layer-map SEG resamples maps to the source geometry; the page strips sample theirs at tile size
    rows, columns = explanation.geometry.source_rows, explanation.geometry.source_columns
    grid = outline_grid(rows, columns)
    displayed = [
        layer for f in chosen for layer in heatmap_layers(explanation, f.name, size=grid, first_only=True)
    ]
    if displayed:
        segmentations += _optional(
            "heat-map SEG", missing, lambda: build_heatmap_seg(source, displayed, device, syntax)
        )
    if layer_maps and displayed:
        every_layer = [layer for f in chosen for layer in heatmap_layers(explanation, f.name)]
        segmentations += _optional(
            "layer-map SEG", missing, lambda: build_layer_maps_seg(source, every_layer, device, syntax)
        )
    model = f"{device.name} {device.version}"
    lungs = np.asarray(masks[list(LUNG_CHANNELS)].any(axis=0), dtype=bool)
    series = PageSeries(source, device, syntax)
    pages = _optional(
        "summary page",
        missing,
        lambda: series.add(summary_page(explanation.findings, explanation.ctr, model), "summary", 1),
    )
    # made by the first page that needs it, inside its own `_optional`
    canvas = functools.cache(lambda: PageCanvas(pixels, lungs))
    for number, leading in enumerate(displayed, start=2):
        finding = next(f for f in chosen if f.name == leading.finding)

        def page(finding=finding, leading=leading, number=number) -> Dataset:
            layers = strip_layers(display_order(explanation, finding.name))
            tile = strip_tile_size(pixels.shape, len(layers))
            strip = [
                (layer, explanation.map_at_size(f"{DISPLAYED_METHOD}/{layer}/{finding.name}", *tile))
                for layer in layers
            ]
            columns, rows = canvas().main_size  # the main map sampled at its picture's size
            key = f"{leading.method}/{leading.layer}/{leading.finding}"
            main = explanation.map_at_size(key, rows, columns)
            picture = finding_page(canvas(), finding, (leading.layer, main), strip, model)
            return series.add(picture, f"finding:{finding.name}", number)

        pages += _optional(f"{finding.name} page", missing, page)
    # every outline once, traced on a grid of at most OUTLINE_GRID pixels a side: GSPS and SR share them
    masks_on_grid = masks if grid == (rows, columns) else explanation.anatomy_at_size(*grid)
    anatomy = {
        name: [to_image(line, grid, rows, columns) for line in outlines(mask)]
        for name, mask in zip(explanation.anatomy_names, masks_on_grid, strict=True)
    }
    hot = _hot_outlines(explanation, displayed)
    by_name = {f.name: f for f in chosen}
    hottest = [(by_name[name], outline.points) for name, outline in hot.items()]
    evidence = pages + _optional(
        "presentation state", missing, lambda: build_gsps(source, anatomy, hottest, device)
    )
    sr = build_sr(
        source,
        explanation.findings,
        explanation.ctr,
        device,
        outlines=hot,
        anatomy_outlines={name: lines[0] for name, lines in anatomy.items() if lines},
        segmentations=segmentations,
        pictures=evidence,
    )
    return ResultObjects([*segmentations, *evidence, sr], missing)


def _hot_outlines(explanation: Explanation, displayed: list[HeatmapLayer]) -> dict[str, FindingOutline]:
    """The largest hot region of each displayed map: the SR's measurement regions, the GSPS's outlines.

    Traced on a grid of twice the model's input size at most: the maps are bilinear resamplings of maps
    at most that fine, so a finer grid adds points and time, not shape."""
    rows, columns = explanation.geometry.source_rows, explanation.geometry.source_columns
    grid = outline_grid(rows, columns, min(OUTLINE_GRID, 2 * explanation.geometry.size))
    found = {}
    for heatmap in displayed:
        on_grid = (
            heatmap.values  # already on this grid
            if grid == heatmap.values.shape
            else explanation.map_at_size(f"{heatmap.method}/{heatmap.layer}/{heatmap.finding}", *grid)
        )
        points = hot_outline(on_grid)
        if points is not None:
            found[heatmap.finding] = FindingOutline(
                to_image(points, grid, rows, columns), heatmap.method, heatmap.layer, HOT_LEVEL
            )
    return found


def save_dicom_results(datasets: list[Dataset], folder: str | Path) -> list[Path]:
    """Write the objects under their `result_file_name`s: deterministic, so re-runs overwrite."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset in datasets:
        path = folder / result_file_name(dataset)
        write_result(dataset, path)
        paths.append(path)
    return paths


def result_file_name(dataset: Dataset) -> str:
    """<Modality>-<SOP Instance UID>.dcm: one name per object, the same wherever it is written."""
    return f"{dataset.Modality}-{dataset.SOPInstanceUID}.dcm"


def write_dicom_results(
    explanation: Explanation,
    source: Dataset,
    pixels: np.ndarray,
    folder: str | Path,
    selection: HeatmapSelection = HeatmapSelection(),
    transfer_syntax: str = DEFAULT_TRANSFER_SYNTAX,
    layer_maps: bool = False,
) -> list[Path]:
    """Build and save every object; raises when an optional one could not be made (the CLI and the node
    build with `build_dicom_results` and report the missing ones instead)."""
    results = build_dicom_results(explanation, source, pixels, selection, transfer_syntax, layer_maps)
    if results.missing:
        raise CXRXAIError("; ".join(results.missing))
    return save_dicom_results(results.datasets, folder)
