"""The anatomy plausibility checks: true anatomy passes, each gross segmentation error fails its check."""

from __future__ import annotations

import numpy as np
import pytest

from cxrxai.anatomy_check import anatomy_checks, plausible
from cxrxai.phantoms.generator import make_phantom


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
