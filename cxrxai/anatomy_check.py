"""Does a lung / heart segmentation look anatomically right on a PA chest radiograph?

Real radiographs come without masks here, yet the default model's segmentation must transfer to them
(issue 4). These checks encode what a radiologist looks at first, without ground truth: each lung on its
own side of the chest and in one piece, the two not overlapping, the heart one piece between the lungs,
low in the chest and not inside the lung fields. Each check gives its measured value and the bound it
must meet, so a failure says what is wrong rather than only that something is. They catch gross failures
(swapped or fragmented lungs, a heart drawn on a hemidiaphragm), not contour errors of a few pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from cxrxai.anatomy import cardiothoracic_ratio
from cxrxai.io.radiograph import Radiograph
from cxrxai.results import Explanation

if TYPE_CHECKING:
    from cxrxai.explain.engine import Explainer


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    bound: str  # e.g. ">= 0.95"
    passed: bool
    meaning: str

    def as_dict(self) -> dict:
        return {"value": self.value, "bound": self.bound, "passed": self.passed, "meaning": self.meaning}


def _largest_share(mask: np.ndarray) -> float:
    """The share of the mask in its largest 8-connected piece (1.0 for one piece, 0.0 when empty)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return 0.0
    sizes = np.bincount(labels.ravel())[1:]
    return float(sizes.max() / sizes.sum())


def _at_least(name: str, value: float, bound: float, meaning: str) -> Check:
    return Check(name, round(float(value), 4), f">= {bound}", bool(value >= bound), meaning)


def _at_most(name: str, value: float, bound: float, meaning: str) -> Check:
    return Check(name, round(float(value), 4), f"<= {bound}", bool(value <= bound), meaning)


def _within(name: str, value: float, low: float, high: float, meaning: str) -> Check:
    return Check(name, round(float(value), 4), f"{low} - {high}", bool(low <= value <= high), meaning)


def anatomy_checks(right_lung: np.ndarray, left_lung: np.ndarray, heart: np.ndarray) -> list[Check]:
    """The checks for masks (rows x columns, bool) of a PA view: the patient's right on the image left."""
    right, left, heart = (np.asarray(m, dtype=bool) for m in (right_lung, left_lung, heart))
    lungs = right | left
    columns = np.flatnonzero(lungs.any(axis=0))
    rows = np.flatnonzero(lungs.any(axis=1))
    if columns.size == 0:
        return [Check("lungs found", 0.0, "> 0", False, "no lung pixel at all")]
    midline = (columns[0] + columns[-1]) / 2  # half way between the outer lung edges
    column = np.arange(lungs.shape[1])[None, :]

    def share_on(mask: np.ndarray, side: np.ndarray) -> float:
        return float((mask & side).sum() / max(mask.sum(), 1))

    checks = [
        _at_least(
            "right lung on the image left",
            share_on(right, column < midline),
            0.95,
            "share of the right-lung mask left of the thoracic midline",
        ),
        _at_least(
            "left lung on the image right",
            share_on(left, column >= midline),
            0.95,
            "share of the left-lung mask right of the thoracic midline",
        ),
        _at_least("right lung in one piece", _largest_share(right), 0.9, "share in its largest piece"),
        _at_least("left lung in one piece", _largest_share(left), 0.9, "share in its largest piece"),
        _at_most(
            "lungs apart",
            (right & left).sum() / max(min(right.sum(), left.sum()), 1),
            0.02,
            "pixels in both lung masks / the smaller lung",
        ),
    ]
    if not heart.any():
        return [*checks, Check("heart found", 0.0, "> 0", False, "no heart pixel at all")]
    heart_row, heart_column = ndimage.center_of_mass(heart)
    right_column = ndimage.center_of_mass(right)[1] if right.any() else midline
    left_column = ndimage.center_of_mass(left)[1] if left.any() else midline
    low = (heart_row - rows[0]) / max(rows[-1] - rows[0], 1)
    between = (heart_column - right_column) / max(left_column - right_column, 1)
    ctr = cardiothoracic_ratio(heart, lungs) or 0.0
    return [
        *checks,
        _at_least("heart in one piece", _largest_share(heart), 0.9, "share in its largest piece"),
        _within(
            "heart between the lungs",
            between,
            0.25,
            0.9,
            "heart centre's place from the right lung's centre (0) to the left lung's (1)",
        ),
        _at_least(
            "heart low in the chest",
            low,
            0.5,
            "heart centre's height from the lung apices (0) to the lowest lung pixel (1)",
        ),
        _at_most(
            "heart outside the lung fields",
            (heart & lungs).sum() / heart.sum(),
            0.1,
            "share of the heart mask inside a lung mask",
        ),
        _within(
            "cardiothoracic ratio",
            ctr,
            0.3,
            0.8,
            "heart width / thoracic width; outside this range the heart mask is implausible",
        ),
    ]


def plausible(checks: list[Check]) -> bool:
    return all(check.passed for check in checks)


def explanation_checks(explanation: Explanation) -> list[Check]:
    """The checks for a model's lung and heart masks on one radiograph (working grid, PA assumed)."""
    masks = explanation.anatomy >= explanation.anatomy_threshold
    names = list(explanation.anatomy_names)
    return anatomy_checks(
        masks[names.index("Right Lung")], masks[names.index("Left Lung")], masks[names.index("Heart")]
    )


def check_radiograph(explainer: Explainer, radiograph: Radiograph, figure: Path | None = None) -> list[Check]:
    """The checks of the explainer's masks on one radiograph; with `figure`, also its overlay there."""
    from cxrxai.render import write_anatomy_overlay

    explanation = explainer.predict(radiograph)
    if figure is not None:
        write_anatomy_overlay(explanation, radiograph.pixels, figure)
    return explanation_checks(explanation)
