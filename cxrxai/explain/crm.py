"""Class-selective relevance mapping (Kim, Rajaraman & Antani 2019).

Definition: remove spatial element (l, m) of a layer's feature maps (all channels set to 0), re-run the
network, and sum the squared change of every output: R(l, m) = sum_c (y_c - y_c(l, m))^2, with y the
sigmoid outputs. We keep the per-output terms R_c (class-selective) and their sum.

Closed form (derivation in docs/explanations.md): for a layer that reaches the logits only through global
average pooling and a linear head, removing (l, m) lowers logit c by exactly CAM_c(l, m) / Z, so
R_c(l, m) = (sigmoid(s_c) - sigmoid(s_c - CAM_c(l, m) / Z))^2 for all positions in one einsum.
The bottleneck also feeds the decoder, so there we re-run the decoder for every removed element, in
chunks, from the cached bottleneck and skip connections: exact, and far cheaper than re-running the model.
`by_ablation` is the definition itself (full re-runs), the test oracle.
"""

from __future__ import annotations

import torch
from torch import nn

from cxrxai.model.network import CXRUNet


def closed_form(logits: torch.Tensor, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """C x h x w per-output CRM for a pooled-head layer. logits: C; features: K x h x w; weights: C x K."""
    z = features.shape[1] * features.shape[2]
    delta = torch.einsum("ck,khw->chw", weights, features) / z
    return (torch.sigmoid(logits)[:, None, None] - torch.sigmoid(logits[:, None, None] - delta)) ** 2


@torch.no_grad()
def exact_from_bottleneck(
    network: CXRUNet, logits: torch.Tensor, bottleneck: torch.Tensor, skips: list[torch.Tensor], chunk: int
) -> torch.Tensor:
    """C x h x w per-output CRM at the bottleneck by partial forward passes (decoder + head only)."""
    _, k, h, w = bottleneck.shape
    positions = h * w
    reference = torch.sigmoid(logits)
    out = torch.empty((positions, logits.shape[0]), dtype=logits.dtype, device=logits.device)
    for start in range(0, positions, chunk):
        n = min(chunk, positions - start)
        removed = bottleneck.expand(n, k, h, w).clone()
        index = torch.arange(start, start + n, device=bottleneck.device)
        removed[torch.arange(n), :, index // w, index % w] = 0.0
        expanded = [s.expand(n, *s.shape[1:]) for s in skips]
        changed, _ = network.decode(removed, expanded)
        out[start : start + n] = (reference - torch.sigmoid(changed)) ** 2
    return out.T.reshape(-1, h, w)


@torch.no_grad()
def by_ablation(network: nn.Module, x: torch.Tensor, layer: nn.Module, chunk: int = 256) -> torch.Tensor:
    """C x h x w per-output CRM by the definition: zero one element of `layer`'s output, re-run everything."""
    reference = torch.sigmoid(network(x)[0][0])
    shapes: list[torch.Size] = []
    probe = layer.register_forward_hook(lambda _m, _i, out: shapes.append(out.shape))
    network(x)
    probe.remove()
    _, _, h, w = shapes[0]
    positions = h * w
    out = torch.empty((positions, reference.shape[0]), dtype=reference.dtype, device=reference.device)
    for start in range(0, positions, chunk):
        n = min(chunk, positions - start)
        index = torch.arange(start, start + n, device=x.device)

        def remove(_m, _i, output, index=index, n=n):
            output = output.clone()
            output[torch.arange(n), :, index // w, index % w] = 0.0
            return output

        handle = layer.register_forward_hook(remove)
        try:
            logits = network(x.expand(n, *x.shape[1:]))[0]
        finally:
            handle.remove()
        out[start : start + n] = (reference - torch.sigmoid(logits)) ** 2
    return out.T.reshape(-1, h, w)
