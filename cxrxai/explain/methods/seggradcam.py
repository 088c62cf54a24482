"""Seg-Grad-CAM (Vinogradova et al. 2020) of the lungs and heart: the segmentation's evidence at every
layer, from the sum of each structure's logits inside its own (detached) mask."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrxai.explain.registry import Explains, Method, Need, register

if TYPE_CHECKING:
    from cxrxai.explain.forward_pass import ForwardPass, LayerMaps


def compute(run: ForwardPass) -> list[LayerMaps]:
    import torch

    from cxrxai.explain.cams import gradcam
    from cxrxai.explain.forward_pass import LayerMaps

    layers = list(run.activations)
    activations = [run.activations[n] for n in layers]
    per_structure: list[tuple[torch.Tensor, ...]] = []
    for s in range(len(run.anatomy_names)):
        mask = run.anatomy_masks[s].float()
        if mask.sum() == 0:
            per_structure.append(tuple(torch.zeros_like(a) for a in activations))
            continue
        target = (run.anatomy_logits[0, s] * mask).sum()
        per_structure.append(torch.autograd.grad(target, activations, retain_graph=True))
    names = list(run.anatomy_names)
    return [
        LayerMaps(
            layer,
            gradcam(activations[i][0].detach(), torch.stack([grads[i][0] for grads in per_structure])),
            names,
            "VJP of the masked logit sum",
        )
        for i, layer in enumerate(layers)
    ]


register(
    Method(
        "seggradcam",
        "Seg-Grad-CAM",
        rank=50,
        compute=compute,
        needs=frozenset({Need.GRAPH}),
        explains=Explains.ANATOMY,
        summary="what the segmentation of each structure rests on",
    )
)
