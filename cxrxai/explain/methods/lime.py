"""LIME (Ribeiro et al. 2016) through captum on SLIC superpixels: a linear surrogate of the finding's
probability fitted to random superpixel removals. Hundreds of forward passes per finding: opt-in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrxai.explain.registry import Method, Need, register

if TYPE_CHECKING:
    from cxrxai.explain.forward_pass import ForwardPass, LayerMaps


def compute(run: ForwardPass) -> list[LayerMaps]:
    import torch
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    from cxrxai.explain.forward_pass import LayerMaps
    from cxrxai.model.network import FindingProbabilities

    s = run.settings
    x = run.x.detach()
    labels = torch.as_tensor(superpixels(x[0, 0].cpu().numpy(), s.lime_segments), device=x.device)[None, None]
    # Ridge(alpha=1) is the surrogate of the original LIME implementation (captum's default is Lasso).
    lime = Lime(FindingProbabilities(run.network), interpretable_model=SkLearnRidge(alpha=1.0))
    baseline = float(x.mean())  # a removed superpixel reads as featureless tissue rather than black
    with torch.no_grad():
        maps = [
            lime.attribute(
                x,
                baselines=baseline,
                target=t,
                feature_mask=labels,
                n_samples=s.lime_samples,
                perturbations_per_eval=s.perturbation_batch,
            )[0, 0]
            for t in run.targets
        ]
    note = f"captum Lime, SLIC superpixels, {s.lime_samples} samples"
    return [LayerMaps("input", torch.relu(torch.stack(maps)), run.names, note)]


def superpixels(image, segments: int):
    """SLIC superpixels of a [0, 1] greyscale image (SLIC suits radiographs better than quickshift);
    labels start at 0 as captum's feature_mask expects."""
    import numpy as np
    from skimage.segmentation import slic

    labels = slic(
        image.astype(np.float64), n_segments=segments, compactness=0.1, channel_axis=None, start_label=0
    )
    return labels.astype(np.int64)


register(
    Method(
        "lime",
        "LIME",
        rank=80,
        compute=compute,
        needs=frozenset({Need.FORWARD_PASSES}),
        default=False,
        summary="a linear surrogate fitted to random superpixel removals",
    )
)
