"""Occlusion (Zeiler & Fergus 2014) through captum: the drop in a finding's probability when a window of
the radiograph is replaced by its mean. Hundreds of forward passes per finding: opt-in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrxai.explain.registry import Method, Need, register

if TYPE_CHECKING:
    from cxrxai.explain.forward_pass import ForwardPass, LayerMaps


def compute(run: ForwardPass) -> list[LayerMaps]:
    import torch
    from captum.attr import Occlusion

    from cxrxai.explain.forward_pass import LayerMaps
    from cxrxai.model.network import FindingProbabilities

    s = run.settings
    x = run.x.detach()
    window = max(2, int(round(x.shape[-1] * s.occlusion_fraction)))
    stride = max(1, window // 2)
    occlusion = Occlusion(FindingProbabilities(run.network))
    with torch.no_grad():
        maps = [
            occlusion.attribute(
                x,
                sliding_window_shapes=(1, window, window),
                strides=(1, stride, stride),
                baselines=float(x.mean()),
                target=t,
                perturbations_per_eval=s.perturbation_batch,
            )[0, 0]
            for t in run.targets
        ]
    return [
        LayerMaps("input", torch.relu(torch.stack(maps)), run.names, f"captum Occlusion, {window} px window")
    ]


register(
    Method(
        "occlusion",
        "Occlusion",
        rank=90,
        compute=compute,
        needs=frozenset({Need.FORWARD_PASSES}),
        default=False,
        summary="the probability's drop when a window is hidden",
    )
)
