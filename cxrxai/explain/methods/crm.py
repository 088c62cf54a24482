"""CRM, class-selective relevance mapping (Kim, Rajaraman & Antani 2019): how much every output changes
when a cell is removed. Closed form at decoder1, exact partial forward passes from the bottleneck
(`cxrxai.explain.crm_formulas`); per finding and summed over all outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrxai.explain.registry import Method, register

if TYPE_CHECKING:
    from cxrxai.explain.forward_pass import ForwardPass, LayerMaps


def compute(run: ForwardPass) -> list[LayerMaps]:
    from cxrxai.explain import crm_formulas
    from cxrxai.explain.forward_pass import ALL_FINDINGS, DIRECT_LAYER, LayerMaps

    net, acts, index = run.network, run.activations, run.index
    logits = run.logits[0].detach()
    head = net.head_weights().detached()
    direct = crm_formulas.closed_form(logits, acts[DIRECT_LAYER][0].detach(), head.average, head.maximum)
    depth = len(net.encoder)
    skips = [acts[f"encoder{i + 1}"].detach() for i in range(depth)]
    decoded = [acts[f"decoder{i}"].detach() for i in range(depth, 0, -1)]
    exact = crm_formulas.exact_from_bottleneck(
        net, logits, acts["bottleneck"].detach(), skips, decoded, run.settings.crm_chunk
    )
    return [
        LayerMaps(DIRECT_LAYER, direct[index], run.names, "closed form: exact for the pooled head"),
        LayerMaps(
            DIRECT_LAYER, direct.sum(0, keepdim=True), [ALL_FINDINGS], "closed form, summed over all outputs"
        ),
        LayerMaps(
            "bottleneck", exact[index], run.names, "exact: local partial forward passes per removed cell"
        ),
        LayerMaps("bottleneck", exact.sum(0, keepdim=True), [ALL_FINDINGS], "exact, summed over all outputs"),
    ]


register(
    Method(
        "crm",
        "CRM",
        rank=40,
        compute=compute,
        summary="change of every output when a cell is removed",
    )
)
