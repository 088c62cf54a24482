"""Perturbation methods through captum: LIME on superpixels and occlusion. Slow (hundreds of forward
passes per finding), so they are opt-in."""

from __future__ import annotations

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import Lime, Occlusion
from skimage.segmentation import slic
from torch import nn

from cxrxai.model.network import FindingLogits


class _Probabilities(FindingLogits):
    """forward(x) -> sigmoid finding probabilities, the output LIME and occlusion perturb."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(super().forward(x))


def superpixels(image: np.ndarray, segments: int, seed_mask: np.ndarray | None = None) -> np.ndarray:
    """SLIC superpixels of a [0, 1] greyscale image (research notes: SLIC suits radiographs better than
    quickshift); labels start at 0 as captum's feature_mask expects."""
    labels = slic(
        image.astype(np.float64), n_segments=segments, compactness=0.1, channel_axis=None, start_label=0
    )
    return labels.astype(np.int64)


@torch.no_grad()
def lime_maps(
    network: nn.Module, x: torch.Tensor, targets: list[int], samples: int, segments: int, batch: int
) -> torch.Tensor:
    """T x N x N positive LIME weights broadcast over superpixels (baseline: the image mean, so a
    removed superpixel reads as featureless tissue rather than black)."""
    forward = _Probabilities(network)
    labels = torch.as_tensor(superpixels(x[0, 0].cpu().numpy(), segments), device=x.device)[None, None]
    # Ridge(alpha=1) is the surrogate of the original LIME implementation (captum's default is Lasso).
    lime = Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0))
    baseline = float(x.mean())
    maps = [
        lime.attribute(
            x,
            baselines=baseline,
            target=t,
            feature_mask=labels,
            n_samples=samples,
            perturbations_per_eval=batch,
        )[0, 0]
        for t in targets
    ]
    return torch.relu(torch.stack(maps))


@torch.no_grad()
def occlusion_maps(
    network: nn.Module, x: torch.Tensor, targets: list[int], window: int, batch: int
) -> torch.Tensor:
    """T x N x N drop in probability when a window x window patch is replaced by the image mean."""
    occlusion = Occlusion(_Probabilities(network))
    stride = max(1, window // 2)
    baseline = float(x.mean())
    maps = [
        occlusion.attribute(
            x,
            sliding_window_shapes=(1, window, window),
            strides=(1, stride, stride),
            baselines=baseline,
            target=t,
            perturbations_per_eval=batch,
        )[0, 0]
        for t in targets
    ]
    return torch.relu(torch.stack(maps))
