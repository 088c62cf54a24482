"""Grad-CAM (Selvaraju et al. 2017) at every layer, encoder to decoder, and the fused map: the pooled
layers' signed contributions added in logit units (`cams.fused_contributions`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrxai.explain.registry import Method, Need, register

if TYPE_CHECKING:
    from cxrxai.explain.forward_pass import ForwardPass, LayerMaps


def compute(run: ForwardPass) -> list[LayerMaps]:
    from cxrxai.explain.cams import fused_contributions, layer_cams
    from cxrxai.explain.forward_pass import DIRECT_LAYER, LayerMaps

    direct, *deeper = layer_cams(run, "gradcam")
    fused = fused_contributions(run.activations["bottleneck"][0], run.activations[DIRECT_LAYER][0], run.head)
    note = "sum of pooled-layer contributions = logit - bias"
    return [direct, LayerMaps("fused", fused.relu(), run.names, note), *deeper]


register(
    Method(
        "gradcam",
        "Grad-CAM",
        rank=10,
        compute=compute,
        needs=frozenset({Need.GRAPH, Need.LAYER_GRADIENTS}),
        summary="spatially averaged gradients weight the activation channels",
    )
)
