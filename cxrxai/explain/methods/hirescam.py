"""HiResCAM (Draelos & Carin 2020) at every layer: gradient x activation, faithful to the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrxai.explain.registry import Method, Need, register

if TYPE_CHECKING:
    from cxrxai.explain.forward_pass import ForwardPass, LayerMaps


def compute(run: ForwardPass) -> list[LayerMaps]:
    from cxrxai.explain.cams import layer_cams

    return layer_cams(run, "hirescam")


register(
    Method(
        "hirescam",
        "HiResCAM",
        rank=30,
        compute=compute,
        needs=frozenset({Need.GRAPH, Need.LAYER_GRADIENTS}),
        summary="element-wise gradient x activation",
    )
)
