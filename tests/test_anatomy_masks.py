"""Anatomical post-processing of the lung and heart masks: what it keeps, drops, joins and fills; that the
results use it while the probabilities stay; that the real radiograph's anatomy passes with it, as framed
and re-framed; and that it costs no Dice on held-out phantoms."""

from __future__ import annotations

import numpy as np
import pytest

from cxrxai.anatomy_masks import anatomy_masks, threshold_masks
from cxrxai.explanation import load_explanation
from cxrxai.io import read_radiograph
from cxrxai.plausibility import anatomy_checks, check_radiograph, check_reframings, plausible
from cxrxai.train.default_model import REAL_RADIOGRAPHS

NAMES = ("Right Lung", "Left Lung", "Heart")


def _chest() -> np.ndarray:
    """Probabilities (3 x 64 x 64) of a chest with the faults real radiographs give an unfamiliar model."""
    p = np.full((3, 64, 64), 0.05, np.float32)
    right, left, heart = p
    right[8:50, 6:26] = 0.9
    right[20:24, 12:16] = 0.3  # a hole (an opacity the model was unsure of)
    right[1:4, 1:4] = 0.8  # a piece in the corner, outside the chest
    left[8:50, 47:58] = 0.9
    left[30:34, 10:13] = 0.7  # a left-lung piece on the image left
    heart[36:56, 27:30] = 0.9  # the heart cut along the spine: a strip ...
    heart[38:58, 33:46] = 0.9  # ... and the main part
    right[40:44, 14:18] = 0.05
    heart[40:44, 14:18] = 0.9  # a "heart" blob enclosed by the right lung
    return p


def test_each_lung_keeps_its_largest_piece_on_its_side_with_holes_filled():
    raw = threshold_masks(_chest(), 0.5)
    right, left, _ = anatomy_masks(_chest(), NAMES, 0.5)
    assert not right[1:4, 1:4].any() and right[20:24, 12:16].all() and right[40:44, 14:18].all()
    assert not left[30:34, 10:13].any() and (left == (raw[1] & (np.arange(64) >= 32))).all()
    assert left.sum() == 42 * 11
    checks = {c.name: c for c in anatomy_checks(right, left, anatomy_masks(_chest(), NAMES, 0.5)[2])}
    assert checks["right lung in one piece"].passed and checks["left lung on the image right"].passed


def test_the_hearts_pieces_are_joined_and_a_blob_in_a_lung_dropped():
    raw = threshold_masks(_chest(), 0.5)
    assert {c.name for c in anatomy_checks(*raw) if not c.passed} >= {"heart in one piece"}
    right, left, heart = anatomy_masks(_chest(), NAMES, 0.5)
    assert not heart[40:44, 14:18].any()  # inside the right lung's field
    assert heart[38:56, 27:46].all()  # strip and main part, and the gap between them
    assert not (heart & (right | left)).any()
    assert plausible(anatomy_checks(right, left, heart))


def test_a_whole_heart_keeps_its_own_pixels():
    p = _chest()
    p[2, 36:56, 27:33] = 0.9  # no gap: one piece
    raw = threshold_masks(p, 0.5)
    processed = anatomy_masks(p, NAMES, 0.5)
    piece = np.zeros_like(raw[2])
    piece[36:58, 27:46] = raw[2][36:58, 27:46]
    assert (processed[2] == piece).all()


def test_unplaceable_anatomy_keeps_its_largest_pieces_and_other_structures_are_only_thresholded():
    p = _chest()
    swapped = anatomy_masks(p[[1, 0, 2]], NAMES, 0.5)  # lungs on the wrong sides: a mirrored image
    assert swapped[0].sum() == 42 * 11  # the left-lung channel's largest piece
    no_lungs = p.copy()
    no_lungs[:2] = 0.0
    heart = anatomy_masks(no_lungs, NAMES, 0.5)[2]
    assert heart.sum() == 20 * 13  # the largest piece, alone
    other = anatomy_masks(p[:1], ("Clavicle",), 0.5)
    assert (other == threshold_masks(p[:1], 0.5)).all()
    assert not anatomy_masks(np.zeros((3, 8, 8), np.float32), NAMES, 0.5).any()


def test_results_use_the_processed_masks_and_keep_the_probabilities(explainer, tmp_path):
    radiograph = read_radiograph(REAL_RADIOGRAPHS / "pa-chest-wg04-rg1.dcm")
    explanation = explainer.predict(radiograph)
    expected = anatomy_masks(explanation.anatomy, explanation.anatomy_names, explanation.anatomy_threshold)
    assert (explanation.masks == expected).all() and explanation.anatomy.dtype == np.float32
    explanation.save(tmp_path)
    loaded = load_explanation(tmp_path)
    assert (loaded.masks == expected).all()
    # saved as float16: the outlines at the source may move where a probability is at the threshold
    assert (loaded.anatomy_at_source() != explanation.anatomy_at_source()).mean() < 1e-3
    older = tmp_path / "older"  # results written before post-processing: the thresholded masks
    loaded.anatomy_masks = None
    loaded.save(older)
    assert (load_explanation(older).masks == threshold_masks(loaded.anatomy, loaded.anatomy_threshold)).all()


@pytest.fixture(scope="module")
def shipped():
    from cxrxai.explain import Explainer
    from cxrxai.model.layout import DEFAULT_BUNDLE

    return Explainer.from_bundle(DEFAULT_BUNDLE)


def test_the_real_radiograph_passes_every_anatomy_check_as_framed_and_reframed(shipped):
    radiograph = read_radiograph(REAL_RADIOGRAPHS / "pa-chest-wg04-rg1.dcm")
    checked = check_radiograph(shipped, radiograph)
    assert plausible(checked.after), [c for c in checked.after if not c.passed]
    after, before = check_reframings(shipped, radiograph, copies=16)
    assert after.all_passed == 16, after.summary()
    assert before.all_passed < after.all_passed  # the post-processing is what makes them pass


def test_post_processing_costs_no_dice_on_held_out_phantoms(shipped, tmp_path):
    from cxrxai.evaluate import dice
    from cxrxai.phantoms.cli import generate

    generate(12, tmp_path, 2027, {"png"}, 256, workers=1)  # the default model's held-out seed and size
    from cxrxai.datasets.evaluation import load_cases, read_mask

    scores: dict[str, list[float]] = {"after": [], "before": []}
    for case in load_cases(tmp_path, "chexpert"):
        explanation = shipped.predict(read_radiograph(case.image))
        truth = np.stack([read_mask(case.masks[name]) for name in NAMES])
        for stage, processed in (("after", True), ("before", False)):
            predicted = explanation.anatomy_at_source(processed=processed)
            scores[stage] += [dice(predicted[k], truth[k]) for k in range(3)]
    assert np.mean(scores["after"]) >= np.mean(scores["before"]) - 1e-9
