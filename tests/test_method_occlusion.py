"""Occlusion, the example of a method added as one file (cxrxai/explain/methods/occlusion.py) plus this test:
registered, offered, run by the engine, and equal to its definition."""

from __future__ import annotations

import pytest
import torch

from cxrxai.explain import DEFAULT_METHODS, METHODS
from cxrxai.explain.registry import Need, method


def test_occlusion_is_registered_as_an_opt_in_method_of_extra_forward_passes():
    occlusion = method("occlusion")
    assert "occlusion" in METHODS and "occlusion" not in DEFAULT_METHODS
    assert occlusion.title == "Occlusion" and occlusion.needs == {Need.FORWARD_PASSES}
    assert not occlusion.evaluated


def test_occlusion_gives_one_map_per_finding(explainer):
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    raw = explainer.explain_tensor(x, [2, 5], ["occlusion"])
    assert [h.key for h in raw.heatmaps] == ["occlusion/input/Cardiomegaly", "occlusion/input/Edema"]
    assert all(h.values.shape == (32, 32) and (h.values >= 0).all() for h in raw.heatmaps)


def test_occlusion_is_the_probability_drop(explainer):
    """Occlusion at a window equals the probability drop when that window holds the image mean."""
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    raw = explainer.explain_tensor(x, [5], ["occlusion"])
    occluded = x.clone()
    occluded[..., 0:4, 0:4] = float(x.mean())
    with torch.no_grad():
        p = torch.sigmoid(explainer.network(x)[0][0, 5])
        q = torch.sigmoid(explainer.network(occluded)[0][0, 5])
    # pixel (0, 0) is covered only by the first 4 x 4 window (stride 2)
    assert raw.heatmaps[0].values[0, 0] == pytest.approx(max(float(p - q), 0.0), abs=1e-6)
