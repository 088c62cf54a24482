"""CRM: the closed form and the exact partial-forward form equal the remove-and-re-run definition."""

from __future__ import annotations

import pytest
import torch

from cxrxai.explain import crm_formulas as crm
from cxrxai.explain.engine import captured_outputs
from cxrxai.explain.forward_pass import ALL_FINDINGS
from cxrxai.labels import FINDINGS


def _engine_crm(explainer, x):
    raw = explainer.explain_tensor(x, list(range(14)), ["crm"])
    return {h.key: torch.as_tensor(h.values) for h in raw.heatmaps}, {h.key: h.note for h in raw.heatmaps}


def test_closed_form_equals_ablation_oracle_for_pooled_layer(explainer64, chest_input):
    maps, notes = _engine_crm(explainer64, chest_input)
    network = explainer64.network
    oracle = crm.by_ablation(network, chest_input, network.layers()["decoder1"])
    assert float(oracle.max()) > 0
    for c, name in enumerate(FINDINGS):
        torch.testing.assert_close(
            maps[f"crm/decoder1/{name}"], oracle[c], rtol=1e-7, atol=1e-7 * float(oracle.max())
        )
    torch.testing.assert_close(maps[f"crm/decoder1/{ALL_FINDINGS}"], oracle.sum(0), rtol=1e-7, atol=1e-12)
    assert "closed form" in notes[f"crm/decoder1/{FINDINGS[0]}"]


def test_bottleneck_partial_forward_equals_ablation_oracle(explainer64, chest_input):
    maps, notes = _engine_crm(explainer64, chest_input)
    network = explainer64.network
    oracle = crm.by_ablation(network, chest_input, network.layers()["bottleneck"])
    assert float(oracle.max()) > 0
    for c, name in enumerate(FINDINGS):
        torch.testing.assert_close(
            maps[f"crm/bottleneck/{name}"], oracle[c], rtol=1e-7, atol=1e-9 * float(oracle.max())
        )
    assert "exact" in notes[f"crm/bottleneck/{FINDINGS[0]}"]


def test_closed_form_is_wrong_for_the_bottleneck(explainer64, chest_input):
    """Why the bottleneck needs partial forwards: its direct-path closed form misses the decoder path."""
    network = explainer64.network
    with torch.no_grad(), captured_outputs({"b": network.layers()["bottleneck"]}) as acts:
        logits, _ = network(chest_input)
    direct_only = crm.closed_form(logits[0], acts["b"][0], network.head_weights().bottleneck.detach())
    oracle = crm.by_ablation(network, chest_input, network.layers()["bottleneck"])
    assert float((direct_only - oracle).abs().max()) > 1e-3 * float(oracle.max())


@pytest.mark.parametrize("max_pool", [False, True])
def test_local_bottleneck_crm_on_a_deeper_network_with_small_windows(tmp_path, max_pool):
    """Windows strictly inside every level (and a different footprint: two residual units per level); with
    a max-pooling head, most removals leave a channel's maximum outside the changed box."""
    from cxrxai.explain.engine import Explainer
    from cxrxai.model.bundle import load_bundle, make_untrained_bundle
    from cxrxai.model.network import NetworkConfig

    config = NetworkConfig(
        channels=(4, 6, 8, 10), strides=(2, 2, 2), features=4, num_res_units=2, max_pool=max_pool
    )
    make_untrained_bundle(tmp_path, config, input_size=128, seed=5)
    bundle = load_bundle(tmp_path)
    bundle.network = bundle.network.double().eval()
    explainer = Explainer(bundle)
    explainer.settings.crm_chunk = 100  # chunks that do not divide the 16 x 16 grid
    x = torch.rand(1, 1, 128, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    maps = {
        h.key: torch.as_tensor(h.values)
        for h in explainer.explain_tensor(x, list(range(14)), ["crm"]).heatmaps
    }
    oracle = crm.by_ablation(bundle.network, x, bundle.network.layers()["bottleneck"], chunk=64)
    assert oracle.shape == (14, 16, 16) and float(oracle.max()) > 0
    for c, name in enumerate(FINDINGS):
        torch.testing.assert_close(
            maps[f"crm/bottleneck/{name}"], oracle[c], rtol=1e-7, atol=1e-9 * float(oracle.max())
        )
