"""The anatomy plausibility checks: true anatomy passes, each gross segmentation error fails its check."""

from __future__ import annotations

import numpy as np
import pytest

from cxrxai.io.radiograph import Radiograph
from cxrxai.phantoms.generator import make_phantom
from cxrxai.plausibility import anatomy_checks, check_reframings, plausible, reframe


@pytest.fixture(scope="module")
def normal_anatomy() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Ground-truth masks of the first phantoms without findings."""
    found = []
    for index in range(60):
        phantom = make_phantom(11, index, rows=128)
        if phantom.labels["No Finding"] and not phantom.patient.ap:
            found.append(tuple(phantom.masks[n] for n in ("Right Lung", "Left Lung", "Heart")))
        if len(found) == 4:
            return found
    raise AssertionError("fewer than 4 normal PA phantoms among 60")


def failed(checks) -> set[str]:
    return {check.name for check in checks if not check.passed}


def test_true_anatomy_passes_every_check(normal_anatomy):
    for right, left, heart in normal_anatomy:
        checks = anatomy_checks(right, left, heart)
        assert plausible(checks), [c for c in checks if not c.passed]


def test_swapped_lungs_fail_the_side_checks(normal_anatomy):
    right, left, heart = normal_anatomy[0]
    assert failed(anatomy_checks(left, right, heart)) >= {
        "right lung on the image left",
        "left lung on the image right",
    }


def test_a_lung_in_bands_fails_one_piece(normal_anatomy):
    right, left, heart = normal_anatomy[0]
    banded = right.copy()
    banded[::8] = False  # horizontal gaps cut the lung into strips
    banded[1::8] = False
    assert failed(anatomy_checks(banded, left, heart)) == {"right lung in one piece"}


def test_a_heart_on_the_right_hemidiaphragm_fails(normal_anatomy):
    right, left, heart = normal_anatomy[0]
    rows, columns = np.nonzero(right)
    moved = np.zeros_like(heart)
    low = rows > np.percentile(rows, 85)
    moved[rows[low], columns[low]] = True  # the right lung base: where the old model drew a heart
    assert {"heart between the lungs", "heart outside the lung fields"} <= failed(
        anatomy_checks(right, left, moved)
    )


def test_a_lung_spilling_over_the_other_fails_lungs_apart(normal_anatomy):
    right, left, heart = normal_anatomy[0]
    assert "lungs apart" in failed(anatomy_checks(right | left, left, heart))


def test_no_heart_or_no_lungs_is_one_failed_check(normal_anatomy):
    right, left, heart = normal_anatomy[0]
    assert failed(anatomy_checks(right, left, np.zeros_like(heart))) == {"heart found"}
    empty = np.zeros_like(right)
    assert [c.name for c in anatomy_checks(empty, empty, heart)] == ["lungs found"]


def test_reframe_turns_moves_crops_and_rewindows_reproducibly():
    pixels = np.linspace(0, 4000, 120 * 100, dtype=np.float32).reshape(120, 100)
    pixels[40:80, 30:70] += 2000  # a bright block whose place shows the move
    first = reframe(pixels, np.random.default_rng(5))
    assert np.array_equal(first, reframe(pixels, np.random.default_rng(5)))
    assert first.dtype == np.float32 and first.min() >= 0 and first.max() <= 1
    rows, columns = first.shape
    assert 0.9 * 120 <= rows <= 120 and 0.9 * 100 <= columns <= 100
    others = [reframe(pixels, np.random.default_rng(seed)) for seed in range(4)]
    assert len({copy.shape for copy in others}) > 1  # crops differ from copy to copy


def test_check_reframings_counts_each_check_over_the_copies(monkeypatch):
    """Half the copies find the heart in two pieces, a quarter find no heart at all: the shares, the mean
    and the copies passing everything say so, after post-processing and (here: always whole) before."""
    import cxrxai.plausibility as plausibility

    right, left, heart = (np.zeros((64, 64), bool) for _ in range(3))
    right[8:56, 6:26], left[8:56, 38:58], heart[36:56, 20:44] = True, True, True
    right &= ~heart
    left &= ~heart
    split = heart.copy()
    split[:, 27:29] = False  # two pieces
    outcomes = iter([heart, split, np.zeros_like(heart), split] * 2)
    monkeypatch.setattr(
        plausibility,
        "check_radiograph",
        lambda explainer, radiograph: plausibility.RadiographChecks(
            anatomy_checks(right, left, next(outcomes)), anatomy_checks(right, left, heart)
        ),
    )
    pixels = np.random.default_rng(0).random((80, 80), dtype=np.float32)
    radiograph = Radiograph(pixels=pixels, source="radiograph")
    reframing, before = check_reframings(None, radiograph, copies=8)  # type: ignore[arg-type]
    assert before.copies == 8 and before.all_passed == 8 and before.mean_passed == 10
    assert reframing.copies == 8 and reframing.all_passed == 2
    assert reframing.pass_share["heart in one piece"] == 0.25 and reframing.pass_share["heart found"] == 0.0
    assert reframing.pass_share["right lung in one piece"] == 1.0
    assert reframing.mean_passed == (10 * 2 + 9 * 4 + 5 * 2) / 8
    summary = reframing.summary()
    assert summary.startswith("over 8 re-framed copies: 8.2 checks pass on average, all of them in 2")
    assert "heart in one piece 0.25" in summary and "right lung in one piece" not in summary
