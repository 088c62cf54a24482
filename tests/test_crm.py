"""CRM: the closed form and the exact partial-forward form equal the remove-and-re-run definition."""

from __future__ import annotations

import torch

from cxrxai.explain import crm
from cxrxai.explain.engine import ALL_FINDINGS
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
    store = {}
    handle = network.layers()["bottleneck"].register_forward_hook(lambda _m, _i, o: store.__setitem__("b", o))
    with torch.no_grad():
        logits, _ = network(chest_input)
    handle.remove()
    w_b, _, _ = network.head_weights()
    direct_only = crm.closed_form(logits[0], store["b"][0], w_b.detach())
    oracle = crm.by_ablation(network, chest_input, network.layers()["bottleneck"])
    assert float((direct_only - oracle).abs().max()) > 1e-3 * float(oracle.max())
