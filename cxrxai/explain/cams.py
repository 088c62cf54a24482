"""Grad-CAM family formulas on (activations, gradients), batched over targets.

Shapes: A is K x h x w (one image's activations at a layer), G is T x K x h x w (one gradient per target).
Every function returns T x h x w raw maps after the method's own ReLU.
"""

from __future__ import annotations

import torch
from torch.nn.functional import relu


def gradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Selvaraju et al. 2017: weights are spatially averaged gradients, map = ReLU(sum_k w_k A_k)."""
    weights = g.mean(dim=(2, 3))
    return relu(torch.einsum("tk,khw->thw", weights, a))


def gradcampp(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Chattopadhay et al. 2018, eq. 19 (exp score): alpha = g^2 / (2 g^2 + sum_ab A_ab g^3).

    MONAI's GradCAMpp uses sum_ab(A_ab g_ab^3) in the denominator; this is the paper's (and
    pytorch-grad-cam's) version. Where the denominator is 0, alpha is 0.
    """
    g2 = g * g
    denominator = 2.0 * g2 + a.sum(dim=(1, 2))[None, :, None, None] * g2 * g
    alpha = torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator, 1.0), 0.0)
    weights = (alpha * relu(g)).sum(dim=(2, 3))
    return relu(torch.einsum("tk,khw->thw", weights, a))


def hirescam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Draelos & Carin 2020: element-wise gradient x activation, summed over channels, then ReLU."""
    return relu(torch.einsum("tkhw,khw->thw", g, a))


def pooled_head_cams(a: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """All three methods for a layer whose only path to the logits is global average pooling + linear.

    There d logit_t / d A_k(u, v) = W_tk / Z everywhere, so no backward pass is needed:
    Grad-CAM = HiResCAM = ReLU(CAM / Z), and Grad-CAM++ has weights Z relu(g_k) / (2 + g_k S_k) with
    S_k = sum_ab A_k(a, b) (eq. 19 with a spatially constant gradient). `w` is T x K.
    """
    z = a.shape[1] * a.shape[2]
    g = w / z
    cam = relu(torch.einsum("tk,khw->thw", g, a))
    factor = 2.0 + g * a.sum(dim=(1, 2))[None, :]
    weights = torch.where(factor != 0, z * relu(g) / torch.where(factor != 0, factor, 1.0), 0.0)
    return {
        "gradcam": cam,
        "hirescam": cam.clone(),
        "gradcampp": relu(torch.einsum("tk,khw->thw", weights, a)),
    }


FORMULAS = {"gradcam": gradcam, "gradcampp": gradcampp, "hirescam": hirescam}
