"""Saliency (Simonyan et al. 2014): |d logit / d input pixel|, from the VJP the gradient CAMs share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrxai.explain.registry import Method, Need, register

if TYPE_CHECKING:
    from cxrxai.explain.forward_pass import ForwardPass, LayerMaps


def compute(run: ForwardPass) -> list[LayerMaps]:
    from cxrxai.explain.forward_pass import LayerMaps

    return [LayerMaps("input", run.input_gradients().abs(), run.names, "|d logit / d input|, same VJP")]


register(
    Method(
        "saliency",
        "Saliency",
        rank=60,
        compute=compute,
        needs=frozenset({Need.GRAPH, Need.INPUT_GRADIENT}),
        summary="pixels whose change moves the score most",
    )
)
