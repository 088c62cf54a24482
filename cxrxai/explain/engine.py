"""The explanation engine: every map of every requested finding from one forward pass.

Cost model (why it is fast):
- `decoder1` reaches the logits only through global average (and optionally max) pooling + the linear
  head, so its gradient is W[c] / Z everywhere (plus W_max[c] at each channel's max cell): Grad-CAM,
  HiResCAM, Grad-CAM++ and CRM for all findings come from one einsum each, with no backward pass at all
  (`cams.pooled_head_cams`, `crm_formulas.closed_form`).
- Every other layer (encoder levels, bottleneck, deeper decoder levels) and the input (saliency) gets its
  gradient from ONE truncated vector-Jacobian product per finding, `torch.autograd.grad(logit_c, [all
  hooked activations, input])`, which stops at the activations and never touches parameter gradients.
  All layers and all gradient methods of that finding share it.
- Seg-Grad-CAM targets ride on the same forward pass (one VJP per anatomy structure).
- Each method (`cxrxai.explain.methods`) declares what it needs (`registry.Need`): the graph is kept, and
  the shared VJP computed, only when a requested method asks for them.
- The bottleneck also feeds the decoder, so its CRM is computed exactly by chunked partial forward passes
  from the bottleneck (`crm_formulas.exact_from_bottleneck`), reusing the cached skip connections.
Reference implementations (pytorch-grad-cam, captum, monai.visualize) re-run forward + full backward per
layer and per target; `bench/bench_explain.py` measures the difference.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from cxrxai.anatomy_masks import anatomy_masks
from cxrxai.cardiothoracic import cardiothoracic_ratio
from cxrxai.errors import BundleError
from cxrxai.explain import DEFAULT_METHODS, registry
from cxrxai.explain.forward_pass import ExplainerSettings, ForwardPass
from cxrxai.explain.registry import Explains, Need, check_methods
from cxrxai.explanation import Explanation, FindingPrediction, HeatMap
from cxrxai.io.radiograph import Radiograph
from cxrxai.io.spacing import NO_SPACING
from cxrxai.labels import EVIDENCE_OUTSIDE_LUNGS, FINDINGS, HEART_CHANNEL, LUNG_CHANNELS, resolve_findings
from cxrxai.model.bundle import Bundle, load_bundle
from cxrxai.model.network import CXRUNet, HeadWeights
from cxrxai.model.preprocess import prepare

__all__ = ["Explainer", "ExplainerSettings", "check_methods"]


@dataclass
class RawExplanation:
    """Engine output on one preprocessed input, before geometry: tensors on the working grid."""

    logits: torch.Tensor  # C
    anatomy: torch.Tensor  # S x N x N probabilities
    masks: np.ndarray  # S x N x N bool, post-processed (`cxrxai.anatomy_masks`)
    heatmaps: list[HeatMap] = field(default_factory=list)


@contextmanager
def captured_outputs(layers: dict[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that keep each layer's output (attached to the graph, so autograd can reach it)."""
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out))
        for name, module in layers.items()
    ]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@functools.cache
def one_blas_thread() -> None:
    """Keep numpy's BLAS (OpenBLAS) to one thread in this process, for good; torch's threads are its own.

    Why: numpy's matrix products here are small (a map resampled by two interpolation matrices) and
    OpenBLAS's second thread busy-waits between them, so building one image's result objects took 1.5-2x
    its wall time in CPU time on 2 cores, taking the other core from the node's process or a second
    worker. With one thread the CPU time equals the wall time; the wall time is the same at 512 rows and
    8-15 % longer at 3000 x 3000 (bench/RESULTS.md)."""
    threadpool_limits(1, user_api="blas")


class Explainer:
    """Load a bundle once (in a long-lived worker), then explain many radiographs."""

    def __init__(
        self, bundle: Bundle, device: str = "cpu", settings: ExplainerSettings | None = None
    ) -> None:
        one_blas_thread()
        self.bundle = bundle
        self.device = torch.device(device)
        self.network: CXRUNet = bundle.network.to(self.device).eval()
        self.settings = settings or ExplainerSettings()
        size = bundle.spec.preprocessing.input_size
        stride = int(np.prod(bundle.spec.network.strides))  # the bottleneck grid is size / stride
        if size % stride:
            raise BundleError(f"input size {size} must be a multiple of the network's total stride {stride}")

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        expected_hash: str | None = None,
        device: str = "cpu",
        settings: ExplainerSettings | None = None,
    ) -> Explainer:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BundleError("--device cuda requested but no CUDA device is available; use --device cpu")
        return cls(load_bundle(path, expected_hash, device=device), device, settings)

    # ----------------------------------------------------------------------------------------------------
    def explain(
        self,
        radiograph: Radiograph,
        findings: Iterable[str] | None = None,
        methods: Iterable[str] = DEFAULT_METHODS,
        lung_mask: bool = False,
        explain_only: Callable[[list[FindingPrediction]], Iterable[str]] | None = None,
    ) -> Explanation:
        """Predictions, anatomy, CTR and the requested maps for one radiograph. With `explain_only`, the
        maps of those `findings` it names once it has seen the predictions: the node maps only the
        findings its result objects show (above threshold by default), one backward pass each."""
        chosen = resolve_findings(list(findings) if findings is not None else None)
        methods = check_methods(methods)
        x, geometry = prepare(radiograph.pixels, self.bundle.spec.preprocessing)
        targets = [FINDINGS.index(f) for f in chosen]
        narrow = None
        if explain_only is not None:
            pick = explain_only

            def narrow(logits: torch.Tensor) -> list[int]:
                named = set(pick(self._predictions(logits)))
                return [t for t in targets if FINDINGS[t] in named]

        raw = self.explain_tensor(x, targets, methods, lung_mask, narrow)
        return self._assemble(raw, radiograph, geometry)

    def _predictions(self, logits: torch.Tensor) -> list[FindingPrediction]:
        """The findings' probabilities against the bundle's thresholds, from 1 x C or C logits."""
        spec = self.bundle.spec
        probabilities = torch.sigmoid(logits.detach().reshape(-1)).cpu().numpy()
        return [
            FindingPrediction(name, float(p), float(spec.thresholds[name]))
            for name, p in zip(spec.findings, probabilities, strict=True)
        ]

    def predict(self, radiograph: Radiograph) -> Explanation:
        """Predictions, anatomy and CTR without maps (one forward pass, no gradients)."""
        return self.explain(radiograph, methods=())

    # ----------------------------------------------------------------------------------------------------
    def explain_tensor(
        self,
        x: torch.Tensor,
        targets: list[int],
        methods: Iterable[str],
        lung_mask: bool = False,
        narrow: Callable[[torch.Tensor], list[int]] | None = None,
    ) -> RawExplanation:
        """The engine on a preprocessed 1 x 1 x N x N input; `targets` are finding indices, or those of
        them `narrow` keeps given the logits. Every method reads the same forward pass (`ForwardPass`);
        what they need decides what it keeps."""
        requested = set(methods)
        chosen = [m for name, m in registry.registered().items() if name in requested]
        needs = set().union(*(m.needs for m in chosen))
        layer_gradient = Need.LAYER_GRADIENTS in needs
        input_gradient = Need.INPUT_GRADIENT in needs
        keep_graph = bool(needs & {Need.GRAPH, Need.LAYER_GRADIENTS, Need.INPUT_GRADIENT})
        net = self.network
        x = x.to(self.device)
        with torch.set_grad_enabled(keep_graph), captured_outputs(net.layers()) as acts:
            if input_gradient:
                x = x.detach().requires_grad_(True)
            logits, anatomy_logits = net(x)
        if narrow is not None:
            targets = narrow(logits)
        anatomy = torch.sigmoid(anatomy_logits[0]).detach()
        spec = self.bundle.spec
        masks = anatomy_masks(anatomy.cpu().numpy(), spec.anatomy, spec.anatomy_threshold)
        index = torch.tensor(targets, dtype=torch.long, device=self.device)
        run = ForwardPass(
            network=net,
            x=x,
            logits=logits,
            anatomy_logits=anatomy_logits,
            anatomy_masks=torch.as_tensor(masks, device=self.device),
            activations=acts,
            targets=targets,
            names=[FINDINGS[t] for t in targets],
            head=_head_rows(net.head_weights().detached(), index),
            anatomy_names=tuple(spec.anatomy),
            settings=self.settings,
            layer_gradient=layer_gradient,
            input_gradient=input_gradient,
        )
        result = RawExplanation(logits=logits[0].detach(), anatomy=anatomy, masks=masks)
        for method in chosen:
            if method.explains is Explains.FINDINGS and not targets:
                continue
            for layer, maps, labels, note in method.compute(run):
                for label, values in zip(labels, maps.detach(), strict=True):
                    result.heatmaps.append(HeatMap(method.name, layer, label, values.cpu().numpy(), note))
        lungs = run.anatomy_masks[list(LUNG_CHANNELS)].any(dim=0).float()
        _lung_statistics(result.heatmaps, lungs, lung_mask)
        return result

    # ----------------------------------------------------------------------------------------------------
    def _assemble(self, raw: RawExplanation, radiograph: Radiograph, geometry) -> Explanation:
        spec = self.bundle.spec
        anatomy = raw.anatomy.cpu().numpy()
        masks = raw.masks
        ctr = cardiothoracic_ratio(masks[HEART_CHANNEL], masks[list(LUNG_CHANNELS)].any(axis=0))
        return Explanation(
            findings=self._predictions(raw.logits),
            anatomy=anatomy,
            anatomy_names=spec.anatomy,
            anatomy_threshold=spec.anatomy_threshold,
            ctr=ctr,
            geometry=geometry,
            model={
                "name": spec.name,
                "version": spec.version,
                "content_hash": self.bundle.content_hash,
                "trained": spec.trained,
                "display_layers": dict(self.bundle.display_layers),
            },
            source={
                **radiograph.identifiers,
                "source": radiograph.source,
                "rows": radiograph.rows,
                "columns": radiograph.columns,
                "pixel_spacing": radiograph.spacing.as_dict() if radiograph.spacing else NO_SPACING,
            },
            heatmaps={h.key: h for h in raw.heatmaps},
            anatomy_masks=masks,
        )


def _head_rows(head: HeadWeights, index: torch.Tensor) -> HeadWeights:
    """The head's weights for the chosen findings only."""
    maximum = None if head.maximum is None else head.maximum[index]
    return HeadWeights(head.bottleneck[index], head.average[index], maximum, head.bias[index])


def _lung_statistics(heatmaps: list[HeatMap], lungs: torch.Tensor, add_masked: bool) -> None:
    """Every map's in-lung energy fraction; with `add_masked`, a lung-masked twin ('<method>+lungmask')."""
    masked: list[HeatMap] = []
    cache: dict[int, np.ndarray] = {}
    for heatmap in heatmaps:
        n = heatmap.values.shape[-1]
        if n not in cache:
            cache[n] = F.adaptive_avg_pool2d(lungs[None, None], n)[0, 0].cpu().numpy()
        fraction = cache[n]
        total = float(heatmap.values.sum())
        heatmap.in_lung_fraction = float((heatmap.values * fraction).sum() / total) if total > 0 else None
        if add_masked:
            note = heatmap.note + "; masked by the model's lung fields"
            if heatmap.target in EVIDENCE_OUTSIDE_LUNGS:
                note += f" (evidence for {heatmap.target} lies partly outside the lungs)"
            masked.append(
                HeatMap(
                    f"{heatmap.method}+lungmask",
                    heatmap.layer,
                    heatmap.target,
                    heatmap.values * fraction,
                    note,
                )
            )
    for heatmap in masked:
        heatmap.in_lung_fraction = 1.0 if heatmap.values.sum() > 0 else None
    heatmaps.extend(masked)
