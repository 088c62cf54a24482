"""Grad-CAM++ (Chattopadhay et al. 2018, eq. 19) at every layer: positive gradients weighted per cell."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrxai.explain.registry import Method, Need, register

if TYPE_CHECKING:
    from cxrxai.explain.forward_pass import ForwardPass, LayerMaps


def compute(run: ForwardPass) -> list[LayerMaps]:
    from cxrxai.explain.cams import layer_cams

    return layer_cams(run, "gradcampp")


register(
    Method(
        "gradcampp",
        "Grad-CAM++",
        rank=20,
        compute=compute,
        needs=frozenset({Need.GRAPH, Need.LAYER_GRADIENTS}),
        summary="higher-order weights: several instances of a finding all show",
    )
)
