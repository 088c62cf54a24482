"""Class-selective relevance mapping (Kim, Rajaraman & Antani 2019).

Definition: remove spatial element (l, m) of a layer's feature maps (all channels set to 0), re-run the
network, and sum the squared change of every output: R(l, m) = sum_c (y_c - y_c(l, m))^2, with y the
sigmoid outputs (computed as `squared_output_change`, free of cancellation). We keep the per-output
terms R_c (class-selective) and their sum.

Closed form (derivation in docs/explanations.md): for a layer that reaches the logits only through global
average pooling and a linear head, removing (l, m) lowers logit c by exactly CAM_c(l, m) / Z, so
R_c(l, m) = (sigmoid(s_c) - sigmoid(s_c - CAM_c(l, m) / Z))^2 for all positions in one einsum. When the
head also max-pools the layer, removing channel k's max cell lowers that max to the channel's second
largest value, so the largest two values per channel complete the closed form.
The bottleneck also feeds the decoder, so there we re-run the decoder for every removed element, in
chunks, from the cached bottleneck and skip connections: exact, and far cheaper than re-running the model.
`by_ablation` is the definition itself (full re-runs), the test oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cxrxai.model.network import CXRUNet, global_max


def squared_output_change(logits: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """(sigmoid(s) - sigmoid(s + d))^2 without cancellation: = (sigmoid(s) sigmoid(-s-d) expm1(d))^2.

    Removing one of 65,536 cells moves a logit by ~1e-6; the naive difference of two sigmoids near 0.5
    keeps only one or two significant digits in float32, this form keeps full precision.
    `logits` broadcasts against `change`.
    """
    return (torch.sigmoid(logits) * torch.sigmoid(-logits - change) * torch.expm1(change)) ** 2


def closed_form(
    logits: torch.Tensor,
    features: torch.Tensor,
    weights: torch.Tensor,
    max_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """C x h x w per-output CRM for a pooled-head layer. logits: C; features: K x h x w (>= 0 when
    max-pooled, as decoder1 is after its ReLU); weights, max_weights: C x K (average, max pooling)."""
    k, h, w = features.shape
    delta = torch.einsum("ck,khw->chw", weights, features) / (h * w)
    if max_weights is not None:
        top = features.reshape(k, -1).topk(min(2, h * w), dim=1)
        second = top.values[:, 1] if h * w > 1 else torch.zeros_like(top.values[:, 0])  # a zeroed cell
        drop = max_weights * (top.values[:, 0] - second)[None, :]  # ties drop nothing, whichever cell
        delta = delta.reshape(len(weights), -1).index_add(1, top.indices[:, 0], drop).view_as(delta)
    return squared_output_change(logits[:, None, None], -delta)


@dataclass(frozen=True)
class Footprint:
    """How a decoder level spreads a change: input cell i reaches outputs f*i + low .. f*i + high."""

    factor: int
    low: int
    high: int

    def reach(self, lo: torch.Tensor, hi: torch.Tensor, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Output box a changed input box [lo, hi] can alter, clipped to the output grid."""
        return (self.factor * lo + self.low).clamp(min=0), (self.factor * hi + self.high).clamp(max=n_out - 1)

    def needs(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input box every output in [lo, hi] depends on."""
        return -((self.high - lo) // self.factor), (hi - self.low) // self.factor


@torch.no_grad()
def probe_footprint(level: nn.Module, channels: int, dtype: torch.dtype, device: torch.device) -> Footprint:
    """Measure a level's footprint by propagating one NaN cell: NaN survives every conv, affine norm and
    activation, so the NaN region of the output is exactly the set of outputs that input cell reaches."""
    n = 16
    x = torch.zeros((1, channels, n, n), dtype=dtype, device=device)
    x[..., n // 2, n // 2] = float("nan")
    reached = torch.isnan(level(x)).any(dim=(0, 1))
    factor = reached.shape[-1] // n
    rows = torch.nonzero(reached.any(dim=1)).flatten()
    columns = torch.nonzero(reached.any(dim=0)).flatten()
    if not torch.equal(rows, columns):
        raise ValueError("decoder level footprint is not symmetric; exact local CRM needs a square footprint")
    return Footprint(factor, int(rows[0]) - factor * (n // 2), int(rows[-1]) - factor * (n // 2))


def _first_conv_channels(module: nn.Module) -> int:
    return next(m.in_channels for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def _crop(full: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, size: int) -> torch.Tensor:
    """P windows of size x size from one C x n x n map, window p starting at (rows[p], columns[p])."""
    span = torch.arange(size, device=full.device)
    r = (rows[:, None] + span)[:, :, None]
    c = (columns[:, None] + span)[:, None, :]
    return full[:, r, c].permute(1, 0, 2, 3)


def _window(lo: torch.Tensor, hi: torch.Tensor, size: int, n: int) -> torch.Tensor:
    """Start of a window of `size` cells holding [lo, hi], centred and shifted to stay inside 0..n-1.

    Shifting (never clipping) keeps every window the same size, so all positions run as one batch; a window
    that touches the image border sees the same zero padding there as the full forward pass did."""
    return ((lo + hi - size + 1) // 2).clamp(min=0, max=max(n - size, 0))


@torch.no_grad()
def exact_from_bottleneck(
    network: CXRUNet,
    logits: torch.Tensor,
    bottleneck: torch.Tensor,
    skips: list[torch.Tensor],
    decoded: list[torch.Tensor],
    chunk: int,
) -> torch.Tensor:
    """C x h x w per-output CRM at the bottleneck, exactly, re-running only what each removal can change.

    With batch norm in eval mode every decoder level is local (convolutions, affine norm, PReLU), so zeroing
    bottleneck cell (l, m) alters only a small box of each decoder level (29 x 29 of 256 x 256 at the last
    level for the default network). For every cell we re-run each level on a window around that box, taking
    unchanged values from the cached forward pass (`decoded`: each level's output, the last after its ReLU),
    then add the change of the pooled features to the head (for a max-pooling head, the new maximum is
    the larger of the changed box's and the unchanged rest's). Equal to the remove-and-re-run definition
    (tested), with a small fraction of the work of re-running the decoder for every cell.
    """
    device, dtype = bottleneck.device, bottleneck.dtype
    levels = list(network.decoder)
    footprints = [probe_footprint(level, _first_conv_channels(level), dtype, device) for level in levels]
    head = network.head_weights().detached()
    _, _, h, w = bottleneck.shape
    z_b, z_d = h * w, decoded[-1].shape[2] * decoded[-1].shape[3]
    inputs = [bottleneck, *decoded[:-1]]  # what each level reads besides its skip connection
    peaks = global_max(decoded[-1])  # each decoder1 channel's maximum and its cell, before any removal
    skips_deepest_first = list(reversed(skips))
    out = torch.empty((h * w, logits.shape[0]), dtype=dtype, device=device)
    for start in range(0, h * w, chunk):
        index = torch.arange(start, min(start + chunk, h * w), device=device)
        count = len(index)
        rows, columns = index // w, index % w
        box: tuple[torch.Tensor, ...] = (
            rows,
            rows,
            columns,
            columns,
        )  # changed cells at the current level's input: lo_r, hi_r, lo_c, hi_c
        previous: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        for level, footprint, skip, original in zip(
            levels, footprints, skips_deepest_first, inputs, strict=True
        ):
            n = original.shape[-1]
            reach = _reach(footprint, box, n * footprint.factor)
            need_lo_r, need_hi_r = (v.clamp(0, n - 1) for v in footprint.needs(reach[0], reach[1]))
            need_lo_c, need_hi_c = (v.clamp(0, n - 1) for v in footprint.needs(reach[2], reach[3]))
            size = min(int(torch.maximum(need_hi_r - need_lo_r, need_hi_c - need_lo_c).max()) + 3, n)
            win_r, win_c = _window(need_lo_r, need_hi_r, size, n), _window(need_lo_c, need_hi_c, size, n)
            values = _crop(original[0], win_r, win_c, size)
            changed = _inside(box, win_r, win_c, size)
            if previous is None:  # the removal itself
                values = values.clone()
                values[torch.arange(count, device=device), :, rows - win_r, columns - win_c] = 0.0
            else:
                values = torch.where(changed, _regrid(*previous, win_r, win_c, size), values)
            result = level(torch.cat([_crop(skip[0], win_r, win_c, size), values], dim=1))
            previous = (result, win_r * footprint.factor, win_c * footprint.factor)
            box = reach
        result, offset_r, offset_c = previous  # type: ignore[misc]
        changed_cells = _inside(box, offset_r, offset_c, result.shape[-1])
        features = torch.relu(result)
        difference = features - _crop(decoded[-1][0], offset_r, offset_c, result.shape[-1])
        delta_pooled = (difference * changed_cells).sum(dim=(2, 3))
        removed = bottleneck[0][:, rows, columns]  # K x P
        delta_logits = (head.average @ delta_pooled.T) / z_d - (head.bottleneck @ removed) / z_b  # C x P
        if head.maximum is not None:  # features >= 0, so masking with 0 never raises a maximum
            new_max = torch.maximum(
                (features * changed_cells).amax(dim=(2, 3)), _max_outside(decoded[-1][0], peaks, box)
            )
            delta_logits += head.maximum @ (new_max - peaks[0]).T
        out[index] = squared_output_change(logits[:, None], delta_logits).T
    return out.T.reshape(-1, h, w)


def _max_outside(
    features: torch.Tensor, peaks: tuple[torch.Tensor, torch.Tensor], box: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """P x K: each channel's maximum outside each position's box (0 if the box covers the whole map).

    A channel's maximum (`peaks`: 1 x K values and flat cells, from `global_max`) is unchanged unless its
    cell lies in the box; only those (position, channel) pairs, a few per channel, are recomputed over the
    whole map."""
    k, h, w = features.shape
    lo_r, hi_r, lo_c, hi_c = box
    values, index = peaks[0][0], peaks[1][0]
    r, c = index // w, index % w
    covered = (r >= lo_r[:, None]) & (r <= hi_r[:, None]) & (c >= lo_c[:, None]) & (c <= hi_c[:, None])
    out = values.expand(len(lo_r), k).clone()
    p, channel = covered.nonzero(as_tuple=True)
    if len(p):
        rows, columns = torch.arange(h, device=features.device), torch.arange(w, device=features.device)
        in_r = (rows >= lo_r[p, None]) & (rows <= hi_r[p, None])
        in_c = (columns >= lo_c[p, None]) & (columns <= hi_c[p, None])
        hidden = in_r[:, :, None] & in_c[:, None, :]
        out[p, channel] = features[channel].masked_fill(hidden, 0.0).amax(dim=(1, 2))
    return out


def _reach(footprint: Footprint, box: tuple[torch.Tensor, ...], n_out: int) -> tuple[torch.Tensor, ...]:
    lo_r, hi_r, lo_c, hi_c = box
    return (*footprint.reach(lo_r, hi_r, n_out), *footprint.reach(lo_c, hi_c, n_out))


def _inside(
    box: tuple[torch.Tensor, ...], start_r: torch.Tensor, start_c: torch.Tensor, size: int
) -> torch.Tensor:
    """P x 1 x size x size mask of the window cells that lie in each position's box."""
    lo_r, hi_r, lo_c, hi_c = box
    span = torch.arange(size, device=start_r.device)
    r = start_r[:, None] + span
    c = start_c[:, None] + span
    in_r = (r >= lo_r[:, None]) & (r <= hi_r[:, None])
    in_c = (c >= lo_c[:, None]) & (c <= hi_c[:, None])
    return (in_r[:, :, None] & in_c[:, None, :])[:, None]


def _regrid(
    result: torch.Tensor,
    offset_r: torch.Tensor,
    offset_c: torch.Tensor,
    start_r: torch.Tensor,
    start_c: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Re-cut each position's level output (window at offset) to the next window (at start); cells the
    output does not cover are clamped to its edge and must be masked out by the caller."""
    limit = result.shape[-1] - 1
    span = torch.arange(size, device=result.device)
    r = ((start_r - offset_r)[:, None] + span).clamp(0, limit)
    c = ((start_c - offset_c)[:, None] + span).clamp(0, limit)
    batch = torch.arange(result.shape[0], device=result.device)[:, None, None, None]
    channel = torch.arange(result.shape[1], device=result.device)[None, :, None, None]
    return result[batch, channel, r[:, None, :, None], c[:, None, None, :]]


@torch.no_grad()
def by_ablation(
    network: nn.Module, x: torch.Tensor, layer: nn.Module, chunk: int = 256, positions: int | None = None
) -> torch.Tensor:
    """C x h x w per-output CRM by the definition: zero one element of `layer`'s output, re-run everything.

    With `positions`, only the first that many cells (row-major) are ablated and C x positions is returned:
    the benchmark times a sample of a grid too large to ablate whole.
    """
    reference = network(x)[0][0]
    shapes: list[torch.Size] = []
    probe = layer.register_forward_hook(lambda _m, _i, out: shapes.append(out.shape))
    network(x)
    probe.remove()
    _, _, h, w = shapes[0]
    sample = positions is not None
    positions = min(positions, h * w) if positions is not None else h * w
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
        out[start : start + n] = squared_output_change(reference, logits - reference)
    return out.T if sample else out.T.reshape(-1, h, w)
