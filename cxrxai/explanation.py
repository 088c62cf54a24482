"""Explanation results and their files: `predictions.json` and `heatmaps.npz` (numpy only, no torch).

Maps are stored at their layer's own grid inside the model's square working frame (a U-Net layer of stride
s has N/s x N/s cells), as float16 normalised to [0, 1], with the raw maximum kept alongside so
raw = normalised x scale. `Letterbox.to_source` places any of them on the source rows x columns on
request: a full-resolution float32 copy of every map would be gigabytes per image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrxai.anatomy_masks import threshold_masks
from cxrxai.geometry import Letterbox

FORMAT_VERSION = 1
# The method whose maps the DICOM results carry and a bundle's display layers are chosen for.
DISPLAYED_METHOD = "gradcam"


@dataclass
class HeatMap:
    """One explanation map: method, layer and target (a finding, an anatomy structure, or 'All Findings')."""

    method: str
    layer: str
    target: str
    values: np.ndarray  # raw, >= 0, layer grid (square)
    note: str = ""  # how it was computed: "closed form", "exact partial forward", "VJP", ...
    in_lung_fraction: float | None = None

    @property
    def key(self) -> str:
        return f"{self.method}/{self.layer}/{self.target}"

    @property
    def scale(self) -> float:
        return float(self.values.max()) if self.values.size else 0.0

    def normalised(self) -> np.ndarray:
        scale = self.scale
        return (
            (self.values / scale).astype(np.float32) if scale > 0 else np.zeros_like(self.values, np.float32)
        )


@dataclass
class FindingPrediction:
    name: str
    probability: float
    threshold: float

    @property
    def present(self) -> bool:
        return self.probability >= self.threshold


@dataclass
class Explanation:
    """What `Explainer.explain` returns for one radiograph."""

    findings: list[FindingPrediction]
    anatomy: np.ndarray  # structures x N x N probabilities on the working grid
    anatomy_names: tuple[str, ...]
    anatomy_threshold: float
    ctr: float | None
    geometry: Letterbox
    model: dict[str, Any]
    source: dict[str, Any]
    heatmaps: dict[str, HeatMap] = field(default_factory=dict)
    # the masks after anatomical post-processing (`cxrxai.anatomy_masks`), structures x N x N; None for
    # results written before it, whose masks are the thresholded probabilities
    anatomy_masks: np.ndarray | None = None

    @property
    def masks(self) -> np.ndarray:
        """The structures' masks on the working grid (bool), as every result uses them."""
        return self.anatomy_masks if self.anatomy_masks is not None else self.thresholded_masks

    @property
    def thresholded_masks(self) -> np.ndarray:
        """The masks as the network gives them, before post-processing (working grid, bool)."""
        return threshold_masks(self.anatomy, self.anatomy_threshold)

    def map_at_source(self, key: str, normalised: bool = True) -> np.ndarray:
        """A map resampled to the source rows x columns, aligned with the source pixels."""
        return self.map_at_size(key, self.geometry.source_rows, self.geometry.source_columns, normalised)

    def map_at_size(self, key: str, rows: int, columns: int, normalised: bool = True) -> np.ndarray:
        """A map resampled to rows x columns covering the source image (a picture at display size)."""
        heatmap = self.heatmaps[key]
        return self.geometry.to_size(heatmap.normalised() if normalised else heatmap.values, rows, columns)

    def anatomy_at_source(self, processed: bool = True) -> np.ndarray:
        """Binary masks (structures x rows x columns) at the source geometry (`anatomy_at_size`)."""
        return self.anatomy_at_size(self.geometry.source_rows, self.geometry.source_columns, processed)

    def anatomy_at_size(self, rows: int, columns: int, processed: bool = True) -> np.ndarray:
        """Binary masks (structures x rows x columns) on a rows x columns grid covering the source; with
        `processed` False, the thresholded probabilities before post-processing.

        The probabilities are interpolated and thresholded, so outlines follow them smoothly. A pixel that
        post-processing added counts as certain (1) and one it removed as excluded (0), so the finer mask
        is the processed one, its new edges at the pixels' edges.
        """
        threshold = self.anatomy_threshold
        probabilities = self.anatomy
        if processed and self.anatomy_masks is not None:
            raw = self.thresholded_masks
            added, removed = self.anatomy_masks & ~raw, raw & ~self.anatomy_masks
            probabilities = np.where(added, np.float32(1), np.where(removed, np.float32(0), probabilities))
        return np.stack([self.geometry.to_size(p, rows, columns) >= threshold for p in probabilities])

    def predictions_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "source": self.source,
            "findings": [
                {"name": f.name, "probability": f.probability, "threshold": f.threshold, "present": f.present}
                for f in self.findings
            ],
            "cardiothoracic_ratio": self.ctr,
            "anatomy": {
                "structures": list(self.anatomy_names),
                "threshold": self.anatomy_threshold,
                "post_processed": self.anatomy_masks is not None,
            },
            "geometry": self.geometry.as_dict(),
            "heatmaps": {
                key: {"note": h.note, "in_lung_fraction": h.in_lung_fraction, "grid": list(h.values.shape)}
                for key, h in self.heatmaps.items()
            },
        }

    def save(self, folder: str | Path) -> None:
        """Write predictions.json and heatmaps.npz into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "predictions.json").write_text(
            json.dumps(self.predictions_dict(), indent=2) + "\n", "utf-8"
        )
        arrays: dict[str, np.ndarray] = {
            key: h.normalised().astype(np.float16) for key, h in self.heatmaps.items()
        }
        arrays["__scales__"] = np.array([h.scale for h in self.heatmaps.values()], dtype=np.float64)
        arrays["__keys__"] = np.array(list(self.heatmaps), dtype=np.str_)
        arrays["__anatomy__"] = self.anatomy.astype(np.float16)
        if self.anatomy_masks is not None:
            arrays["__anatomy_masks__"] = self.anatomy_masks.astype(bool)
        arrays["__geometry__"] = np.array(json.dumps(self.geometry.as_dict()), dtype=np.str_)
        np.savez_compressed(folder / "heatmaps.npz", **arrays)  # type: ignore[arg-type]


def summary_table(report) -> str:
    """Findings and CTR as a text table, from anything with `findings` and `ctr`: an Explanation, or
    the ReportedFindings read back from an SR (the demo prints what the PACS received)."""
    lines = [f"{'finding':<28} {'probability':>11} {'threshold':>9}  decision"]
    for f in report.findings:
        lines.append(
            f"{f.name:<28} {f.probability:>11.3f} {f.threshold:>9.2f}  {'PRESENT' if f.present else 'absent'}"
        )
    ctr = "n/a" if report.ctr is None else f"{report.ctr:.3f}"
    lines.append(f"{'cardiothoracic ratio':<28} {ctr:>11}")
    return "\n".join(lines)


def load_heatmaps(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, float], Letterbox, np.ndarray]:
    """Read heatmaps.npz: (normalised maps by key, raw scales by key, geometry, anatomy probabilities)."""
    return _read_heatmaps(path)[:4]


def _read_heatmaps(path: str | Path):
    """heatmaps.npz in one read: `load_heatmaps`' four items and the post-processed masks (None in files
    written before post-processing)."""
    with np.load(path, allow_pickle=False) as data:
        keys = [str(k) for k in data["__keys__"]]
        maps = {key: data[key].astype(np.float32) for key in keys}
        scales = dict(zip(keys, (float(s) for s in data["__scales__"]), strict=True))
        geometry = Letterbox(**json.loads(str(data["__geometry__"])))
        anatomy = data["__anatomy__"].astype(np.float32)
        masks = data["__anatomy_masks__"].astype(bool) if "__anatomy_masks__" in data else None
    return maps, scales, geometry, anatomy, masks


def load_explanation(folder: str | Path) -> Explanation:
    """The Explanation `Explanation.save` wrote into `folder` (predictions.json, heatmaps.npz): what a
    process that explained a radiograph hands back, e.g. the Slicer module's local run. The maps come back
    in float16 steps of their maximum (as saved) and the notes as written."""
    folder = Path(folder)
    predictions = json.loads((folder / "predictions.json").read_text("utf-8"))
    maps, scales, geometry, anatomy, masks = _read_heatmaps(folder / "heatmaps.npz")
    if "anatomy" not in predictions:
        raise ValueError(f"{folder / 'predictions.json'} has no anatomy record: explain the image again")
    heatmaps = {}
    for key, values in maps.items():
        method, layer, target = key.split("/", 2)
        written = predictions["heatmaps"].get(key, {})
        heatmaps[key] = HeatMap(
            method, layer, target, values * np.float32(scales[key]), written.get("note", ""),
            written.get("in_lung_fraction"),
        )  # fmt: skip
    return Explanation(
        findings=[
            FindingPrediction(f["name"], f["probability"], f["threshold"]) for f in predictions["findings"]
        ],
        anatomy=anatomy,
        anatomy_names=tuple(predictions["anatomy"]["structures"]),
        anatomy_threshold=float(predictions["anatomy"]["threshold"]),
        ctr=predictions["cardiothoracic_ratio"],
        geometry=geometry,
        model=predictions["model"],
        source=predictions["source"],
        heatmaps=heatmaps,
        anatomy_masks=masks,
    )
