"""Our results for one radiograph, read into what the module shows: the findings table (sorted, coloured)
and the catalogue of heatmaps by finding, method and layer, with the lung / heart masks and the CTR.

Read with the core readers (`cxrxai.dicom.sr.read_sr`, `cxrxai.dicom.seg.read_seg`: pydicom only), so
Slicer shows exactly what the SR says; from a local run, the same structure is filled from the
explanation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from CXRXAILib.display import (
    FUSED,
    comparison_layers,
    lung_masked,
    score_colour,
    sorted_layers,
    sorted_methods,
)
from CXRXAILib.presentation import Outline, read_outlines

LUNGS = ("Right Lung", "Left Lung")
ANATOMY_ORDER = ("Right Lung", "Left Lung", "Heart")
SEGMENTATION_METHOD = "seggradcam"
DISPLAYED_METHOD = "gradcam"  # the method our SEG, pages and presentation state show


@dataclass(frozen=True)
class FindingRow:
    name: str
    probability: float
    threshold: float
    present: bool

    @property
    def colour(self) -> tuple[int, int, int]:
        return score_colour(self.probability, self.threshold)

    @property
    def decision(self) -> str:
        return "present" if self.present else "absent"


@dataclass
class RadiographResults:
    """Everything the module shows for one radiograph by one model."""

    source_sop_instance_uid: str
    study_instance_uid: str
    model: str  # "name version"
    model_hash: str
    findings: list[FindingRow]  # highest probability first
    ctr: float | None
    # (target, method, layer): the target is a finding, or a structure for Seg-Grad-CAM
    maps: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    anatomy: dict[str, np.ndarray] = field(default_factory=dict)  # structure -> bool rows x columns
    pictures: list[str] = field(default_factory=list)  # Secondary Capture files, for the PACS-style pages
    outlines: list[Outline] = field(default_factory=list)  # the presentation state's, in pixel coordinates
    # finding -> the Grad-CAM layer the model's results lead with (the first of its maps in our SEG)
    display_layers: dict[str, str] = field(default_factory=dict)

    def mapped_findings(self) -> list[str]:
        """Findings that have at least one heatmap, in table order."""
        have = {target for target, _, _ in self.maps}
        return [row.name for row in self.findings if row.name in have]

    def structures(self) -> list[str]:
        """Structures with Seg-Grad-CAM maps (which explain the segmentation, not a finding)."""
        have = {target for target, method, _ in self.maps if method == SEGMENTATION_METHOD}
        return [name for name in ANATOMY_ORDER if name in have]

    def methods(self, finding: str) -> list[str]:
        """The finding's methods, plus Seg-Grad-CAM whenever the segmentation has maps."""
        own = [m for target, m, _ in self.maps if target == finding]
        return sorted_methods(own + ([SEGMENTATION_METHOD] if self.structures() else []))

    def _target(self, finding: str, method: str, structure: str | None) -> str:
        if method != SEGMENTATION_METHOD:
            return finding
        structures = self.structures()
        if structure is None and structures:
            return structures[-1]  # the heart: the structure the CTR depends on most
        return structure or ""

    def layers(self, finding: str, method: str, structure: str | None = None) -> list[str]:
        target = self._target(finding, method, structure)
        return sorted_layers([layer for t, m, layer in self.maps if t == target and m == method])

    def default_layer(self, finding: str, method: str, structure: str | None = None) -> str | None:
        """The layer the results lead with (chosen from the model's own evaluation) when it has this
        method's map, else fused when there is one (it summarises the layers), else the last decoder
        level."""
        layers = self.layers(finding, method, structure)
        if not layers:
            return None
        if method == DISPLAYED_METHOD and self.display_layers.get(finding) in layers:
            return self.display_layers[finding]
        return FUSED if FUSED in layers else [layer for layer in layers if layer != FUSED][-1]

    def lungs(self) -> np.ndarray | None:
        masks = [self.anatomy[name] for name in LUNGS if name in self.anatomy]
        return np.logical_or.reduce(masks) if masks else None

    def heatmap(
        self, finding: str, method: str, layer: str, lung_mask: bool = False, structure: str | None = None
    ) -> np.ndarray:
        target = self._target(finding, method, structure)
        try:
            values = self.maps[target, method, layer]
        except KeyError:
            raise KeyError(f"no {method} map of {target} at {layer} in these results") from None
        return lung_masked(values, self.lungs()) if lung_mask else values

    def comparison(self, finding: str, method: str, views: int, structure: str | None = None) -> list[str]:
        return comparison_layers(self.layers(finding, method, structure), views)


def read_results(
    sr: Dataset,
    segmentations: Iterable[Dataset] = (),
    pictures: Iterable[str] = (),
    presentation_states: Iterable[Dataset] = (),
) -> RadiographResults:
    """The results of one radiograph from our SR, its SEGs (anatomy and heatmaps) and its presentation
    state (outlines)."""
    from cxrxai.dicom.seg import read_seg
    from cxrxai.dicom.sr import DEVICE_SERIAL_NUMBER, content_values, read_sr

    reported = read_sr(sr)
    results = RadiographResults(
        source_sop_instance_uid=reported.source_sop_instance_uid,
        study_instance_uid=str(sr.StudyInstanceUID),
        model=f"{reported.algorithm_name} {reported.algorithm_version}".strip(),
        model_hash=content_values(sr)[0].get(DEVICE_SERIAL_NUMBER, ""),
        findings=_rows(
            (f.name, f.probability, f.threshold, reported.present[f.name]) for f in reported.findings
        ),
        ctr=reported.ctr,
        pictures=list(pictures),
        outlines=[outline for state in presentation_states for outline in read_outlines(state)],
    )
    stepped: dict[tuple[str, str, str], np.ndarray] = {}
    for dataset in segmentations:
        for segment in read_seg(dataset).segments:
            if segment.finding and segment.method and segment.layer:
                key = (segment.finding, segment.method, segment.layer)
                if segment.band is None:
                    results.maps[key] = segment.values
                else:  # a hot-region level: the map stepped at the band's lower bound
                    level = np.where(segment.values, np.float32(segment.band[0]), np.float32(0.0))
                    stepped[key] = np.maximum(stepped.get(key, level), level)
                results.display_layers.setdefault(segment.finding, segment.layer)
            elif dataset.SegmentationType == "BINARY":
                results.anatomy[segment.label] = segment.values.astype(bool)
    for key, values in stepped.items():
        results.maps.setdefault(key, values)  # the continuous per-layer map, when there is one, wins
    return results


def from_explanation(explanation) -> RadiographResults:
    """The results of a local run (`cxrxai.explain.Explainer.explain`), every map at source geometry."""
    results = RadiographResults(
        source_sop_instance_uid=str(explanation.source.get("SOPInstanceUID", "")),
        study_instance_uid=str(explanation.source.get("StudyInstanceUID", "")),
        model=f"{explanation.model['name']} {explanation.model['version']}",
        model_hash=str(explanation.model["content_hash"]),
        findings=_rows((f.name, f.probability, f.threshold, f.present) for f in explanation.findings),
        ctr=explanation.ctr,
    )
    results.display_layers.update(explanation.model.get("display_layers", {}))
    for key, heatmap in explanation.heatmaps.items():
        results.maps[heatmap.target, heatmap.method, heatmap.layer] = explanation.map_at_source(key)
    masks = explanation.anatomy_at_source()
    results.anatomy = dict(zip(explanation.anatomy_names, masks, strict=True))
    return results


def _rows(values: Iterable[tuple[str, float, float, bool]]) -> list[FindingRow]:
    rows = [FindingRow(name, float(p), float(t), bool(present)) for name, p, t, present in values]
    return sorted(rows, key=lambda row: row.probability, reverse=True)
