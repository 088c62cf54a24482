"""Does a lung / heart segmentation look anatomically right on a PA chest radiograph?

Real radiographs come without masks here, yet the default model's segmentation must transfer to them
(issue 4). These checks encode what a radiologist looks at first, without ground truth: each lung on its
own side of the chest and in one piece, the two not overlapping, the heart one piece between the lungs,
low in the chest and not inside the lung fields. Each check gives its measured value and the bound it
must meet, so a failure says what is wrong rather than only that something is. They catch gross failures
(swapped or fragmented lungs, a heart drawn on a hemidiaphragm), not contour errors of a few pixels.

One radiograph is one framing of one patient: a model can pass at that framing by luck and fail when the same
chest is turned a few degrees or windowed a little darker. `check_reframings` repeats the checks on
re-framed copies (`reframe`) and reports how often each passes, which is what transfer means.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from cxrxai.cardiothoracic import cardiothoracic_ratio
from cxrxai.explanation import Explanation
from cxrxai.io.radiograph import Radiograph

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


def explanation_checks(explanation: Explanation, processed: bool = True) -> list[Check]:
    """The checks for a model's lung and heart masks on one radiograph (working grid, PA assumed): the
    post-processed masks every result uses, or with `processed` False the thresholded probabilities."""
    masks = explanation.masks if processed else explanation.thresholded_masks
    names = list(explanation.anatomy_names)
    return anatomy_checks(
        masks[names.index("Right Lung")], masks[names.index("Left Lung")], masks[names.index("Heart")]
    )


@dataclass(frozen=True)
class RadiographChecks:
    """The checks of one radiograph's masks after anatomical post-processing (what the results show) and
    before it (what the network alone gives)."""

    after: list[Check]
    before: list[Check]


def check_radiograph(
    explainer: Explainer, radiograph: Radiograph, figure: Path | None = None
) -> RadiographChecks:
    """The checks of the explainer's masks on one radiograph; with `figure`, also its overlay there."""
    from cxrxai.render import write_anatomy_overlay

    explanation = explainer.predict(radiograph)
    if figure is not None:
        write_anatomy_overlay(explanation, radiograph.pixels, figure)
    return RadiographChecks(explanation_checks(explanation), explanation_checks(explanation, processed=False))


@dataclass(frozen=True)
class Reframing:
    """How the checks fared over re-framed copies of one radiograph."""

    copies: int
    pass_share: dict[str, float]  # per check, the share of copies it passed in (missing = failed)
    mean_passed: float  # checks passed per copy, on average
    all_passed: int  # copies that passed every check

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line: checks passed on average, copies passing all, and each check that failed in any copy."""
        shaky = [f"{name} {share:.2f}" for name, share in self.pass_share.items() if share < 1]
        return (
            f"over {self.copies} re-framed copies: {self.mean_passed:.1f} checks pass on average, "
            f"all of them in {self.all_passed}"
            + (f"; share passing, where below 1: {', '.join(shaky)}" if shaky else "")
        )


def reframe(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The radiograph (rows x columns, any range) as another exposure of the same chest might frame and
    process it: turned up to 4 degrees, moved up to 2 % of its size, cropped by up to 5 % at each edge,
    and a contrast curve (gamma 0.75-1.35) on its 0.5-99.5 percentile range. All are within what one
    department's PA radiographs vary by, so anatomy that transferred survives them."""
    from cxrxai.render import unit_window

    image = ndimage.rotate(unit_window(pixels), rng.uniform(-4, 4), reshape=False, order=1, mode="nearest")
    shift = rng.uniform(-0.02, 0.02, 2) * image.shape
    image = ndimage.shift(image, shift, order=1, mode="nearest")
    top, left, bottom, right = (rng.uniform(0, 0.05, 4) * np.array(image.shape * 2)).astype(int)
    image = image[top : image.shape[0] - bottom, left : image.shape[1] - right]
    return (np.clip(image, 0, 1) ** rng.uniform(0.75, 1.35)).astype(np.float32)


def check_reframings(
    explainer: Explainer, radiograph: Radiograph, copies: int = 16, seed: int = 0
) -> tuple[Reframing, Reframing]:
    """The checks on `copies` re-framed copies of the radiograph (`reframe`, seeded): after and before
    anatomical post-processing, from the same predictions."""
    rng = np.random.default_rng(seed)
    checked = [
        check_radiograph(explainer, replace(radiograph, pixels=reframe(radiograph.pixels, rng)))
        for _ in range(copies)
    ]
    return _reframing([c.after for c in checked]), _reframing([c.before for c in checked])


def _reframing(per_copy: list[list[Check]]) -> Reframing:
    copies = len(per_copy)
    passes: dict[str, int] = {}
    for checks in per_copy:
        for check in checks:
            passes[check.name] = passes.get(check.name, 0) + check.passed
    return Reframing(
        copies=copies,
        pass_share={name: round(count / copies, 4) for name, count in passes.items()},
        mean_passed=round(float(np.mean([sum(c.passed for c in checks) for checks in per_copy])), 2)
        if copies
        else 0.0,
        all_passed=sum(plausible(checks) for checks in per_copy),
    )
