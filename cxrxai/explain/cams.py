"""Grad-CAM family formulas on (activations, gradients), batched over targets.

Shapes: A is K x h x w (one image's activations at a layer), G is T x K x h x w (one gradient per target).
Every function returns T x h x w raw maps after the method's own ReLU.
"""

from __future__ import annotations

import torch
from torch.nn.functional import relu

from cxrxai.explain.forward_pass import DIRECT_LAYER, ForwardPass, LayerMaps
from cxrxai.model.network import HeadWeights, global_max


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


def pooled_contributions(
    a: torch.Tensor, w_average: torch.Tensor, w_maximum: torch.Tensor | None = None
) -> torch.Tensor:
    """T x h x w: each cell's signed share of (logit - bias) through a pooled linear head.

    Average pooling gives every cell CAM / Z (Z = h w); max pooling adds W_max[t, k] A_k(max cell) at each
    channel's maximum cell. Summed over the grid this is the layer's whole contribution to the logit, and
    it is also the gradient x activation map (HiResCAM before its ReLU): the gradient is W / Z everywhere
    plus W_max at the max cell. `w_average`, `w_maximum` are T x K.
    """
    z = a.shape[1] * a.shape[2]
    shares = torch.einsum("tk,khw->thw", w_average / z, a)
    if w_maximum is None:
        return shares
    values, index = global_max(a[None])
    flat = shares.reshape(shares.shape[0], -1).index_add(1, index[0], w_maximum * values)
    return flat.view_as(shares)


def pooled_head_cams(
    a: torch.Tensor, w_average: torch.Tensor, w_maximum: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """All three methods for a layer whose only path to the logits is a pooled linear head.

    There d logit_t / d A_k(u, v) = W_tk / Z everywhere (plus W_max,tk at channel k's max cell when the
    head also max-pools), so no backward pass is needed: Grad-CAM weights are (W + W_max) / Z, HiResCAM is
    ReLU(`pooled_contributions`), and Grad-CAM++ (eq. 19) has weights sum_ab relu(g) / (2 + g S_k) with
    S_k = sum_ab A_k(a, b), which takes one value at Z - 1 cells and another at the max cell.
    """
    z = a.shape[1] * a.shape[2]
    total = a.sum(dim=(1, 2))[None, :]

    def alpha_relu(g: torch.Tensor) -> torch.Tensor:  # eq. 19's alpha x relu(g); 0 where undefined
        factor = 2.0 + g * total
        return torch.where(factor != 0, relu(g) / torch.where(factor != 0, factor, 1.0), 0.0)

    g = w_average / z
    if w_maximum is None:
        gradcam_weights, plus_weights = g, z * alpha_relu(g)
    else:
        gradcam_weights = g + w_maximum / z
        plus_weights = (z - 1) * alpha_relu(g) + alpha_relu(g + w_maximum)
    return {
        "gradcam": relu(torch.einsum("tk,khw->thw", gradcam_weights, a)),
        "hirescam": relu(pooled_contributions(a, w_average, w_maximum)),
        "gradcampp": relu(torch.einsum("tk,khw->thw", plus_weights, a)),
    }


FORMULAS = {"gradcam": gradcam, "gradcampp": gradcampp, "hirescam": hirescam}


def layer_cams(run: ForwardPass, method: str) -> list[LayerMaps]:
    """One Grad-CAM family method at every hooked layer: the closed form at the directly pooled layer
    (computed once for all three methods), the shared truncated VJP everywhere else."""
    a = run.activations[DIRECT_LAYER][0].detach()
    direct = run.once("pooled head cams", lambda: pooled_head_cams(a, run.head.average, run.head.maximum))
    maps = [
        LayerMaps(DIRECT_LAYER, direct[method], run.names, "closed form: pooled linear head, no backward")
    ]
    for layer in run.gradient_layers:
        values = FORMULAS[method](run.activations[layer][0].detach(), run.layer_gradients(layer))
        maps.append(LayerMaps(layer, values, run.names, "truncated VJP"))
    return maps


def fused_contributions(bottleneck: torch.Tensor, direct: torch.Tensor, head: HeadWeights) -> torch.Tensor:
    """T x N x N signed contribution density of the pooled layers, summing exactly to logit - bias.

    logit_c - b_c = sum over the pooled layers of each cell's share (`pooled_contributions`: CAM / Z, and
    the max-pooled term at each channel's max cell). Each bottleneck cell's share is spread evenly over
    the r x r working cells it covers, so the sum is preserved; adding maps this way, rather than averaging
    min-max-normalised maps, keeps each layer's real weight. `head` holds the rows of the T targets.
    """
    coarse = pooled_contributions(bottleneck.detach(), head.bottleneck)
    r = direct.shape[1] // bottleneck.shape[1]
    spread = coarse.repeat_interleave(r, dim=1).repeat_interleave(r, dim=2) / (r * r)
    return spread + pooled_contributions(direct.detach(), head.average, head.maximum)
