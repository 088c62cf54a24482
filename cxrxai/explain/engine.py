"""The explanation engine: every map of every requested finding from one forward pass.

Cost model (why it is fast):
- `decoder1` reaches the logits only through global average (and optionally max) pooling + the linear
  head, so its gradient is W[c] / Z everywhere (plus W_max[c] at each channel's max cell): Grad-CAM,
  HiResCAM, Grad-CAM++ and CRM for all findings come from one einsum each, with no backward pass at all
  (`cams.pooled_head_cams`, `crm.closed_form`).
- Every other layer (encoder levels, bottleneck, deeper decoder levels) and the input (saliency) gets its
  gradient from ONE truncated vector-Jacobian product per finding, `torch.autograd.grad(logit_c, [all
  hooked activations, input])`, which stops at the activations and never touches parameter gradients.
  All layers and all gradient methods of that finding share it.
- Seg-Grad-CAM targets ride on the same forward pass (one VJP per anatomy structure).
- The bottleneck also feeds the decoder, so its CRM is computed exactly by chunked partial forward passes
  from the bottleneck (`crm.exact_from_bottleneck`), reusing the cached skip connections.
Reference implementations (pytorch-grad-cam, captum, monai.visualize) re-run forward + full backward per
layer and per target; `bench/bench_explain.py` measures the difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrxai.anatomy import cardiothoracic_ratio
from cxrxai.errors import BundleError
from cxrxai.explain import DEFAULT_METHODS, METHODS
from cxrxai.explain import crm as crm_maps
from cxrxai.explain.cams import FORMULAS, gradcam, pooled_contributions, pooled_head_cams
from cxrxai.io.radiograph import Radiograph
from cxrxai.labels import EVIDENCE_OUTSIDE_LUNGS, FINDINGS, LUNG_CHANNELS, resolve_findings
from cxrxai.model.bundle import Bundle, load_bundle
from cxrxai.model.network import CXRUNet, HeadWeights
from cxrxai.model.preprocess import prepare
from cxrxai.results import Explanation, FindingPrediction, HeatMap

GRADIENT_CAMS = ("gradcam", "gradcampp", "hirescam")
DIRECT_LAYER = "decoder1"
ALL_FINDINGS = "All Findings"


@dataclass
class ExplainerSettings:
    """Tunables of the slower methods; defaults are sized for 2 CPU cores at 256 px."""

    smoothgrad_samples: int = 8  # each costs one forward + one VJP per finding (~0.4 s at 256 px, 2 cores)
    smoothgrad_noise: float = 0.15  # fraction of the input's intensity range (Smilkov et al. suggest 10-20 %)
    crm_chunk: int = 128  # bottleneck positions per partial forward batch
    lime_samples: int = 256
    lime_segments: int = 100
    occlusion_fraction: float = 1 / 8  # window side as a fraction of the input size
    perturbation_batch: int = 32
    seed: int = 0


@dataclass
class RawExplanation:
    """Engine output on one preprocessed input, before geometry: tensors on the working grid."""

    logits: torch.Tensor  # C
    anatomy: torch.Tensor  # S x N x N probabilities
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


class Explainer:
    """Load a bundle once (in a long-lived worker), then explain many radiographs."""

    def __init__(
        self, bundle: Bundle, device: str = "cpu", settings: ExplainerSettings | None = None
    ) -> None:
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
    ) -> Explanation:
        """Predictions, anatomy, CTR and the requested maps for one radiograph."""
        chosen = resolve_findings(list(findings) if findings is not None else None)
        methods = check_methods(methods)
        x, geometry = prepare(radiograph.pixels, self.bundle.spec.preprocessing)
        raw = self.explain_tensor(x, [FINDINGS.index(f) for f in chosen], methods, lung_mask)
        return self._assemble(raw, radiograph, geometry)

    def predict(self, radiograph: Radiograph) -> Explanation:
        """Predictions, anatomy and CTR without maps (one forward pass, no gradients)."""
        return self.explain(radiograph, methods=())

    # ----------------------------------------------------------------------------------------------------
    def explain_tensor(
        self, x: torch.Tensor, targets: list[int], methods: Iterable[str], lung_mask: bool = False
    ) -> RawExplanation:
        """The engine on a preprocessed 1 x 1 x N x N input; `targets` are finding indices."""
        methods = tuple(methods)
        net = self.network
        layers = net.layers()
        x = x.to(self.device)
        needs_graph = any(m in methods for m in (*GRADIENT_CAMS, "seggradcam", "saliency"))
        with torch.set_grad_enabled(needs_graph), captured_outputs(layers) as acts:
            if needs_graph:
                x = x.detach().requires_grad_(True)
            logits, anatomy_logits = net(x)
        anatomy = torch.sigmoid(anatomy_logits[0]).detach()
        threshold = self.bundle.spec.anatomy_threshold
        lungs = (anatomy[list(LUNG_CHANNELS)] >= threshold).any(dim=0).float()
        result = RawExplanation(logits=logits[0].detach(), anatomy=anatomy)
        names = [FINDINGS[t] for t in targets]
        index = torch.tensor(targets, dtype=torch.long, device=self.device)
        head = _head_rows(net.head_weights().detached(), index)

        def add(method: str, layer: str, maps: torch.Tensor, labels: list[str], note: str) -> None:
            for label, values in zip(labels, maps.detach(), strict=True):
                result.heatmaps.append(HeatMap(method, layer, label, values.cpu().numpy(), note))

        cams = [m for m in GRADIENT_CAMS if m in methods]
        if targets and cams:
            direct = pooled_head_cams(acts[DIRECT_LAYER][0].detach(), head.average, head.maximum)
            for method in cams:
                add(
                    method,
                    DIRECT_LAYER,
                    direct[method],
                    names,
                    "closed form: pooled linear head, no backward",
                )
        if targets and "gradcam" in methods:
            fused = fused_contributions(acts["bottleneck"][0], acts[DIRECT_LAYER][0], head)
            add(
                "gradcam",
                "fused",
                torch.relu(fused),
                names,
                "sum of pooled-layer contributions = logit - bias",
            )

        vjp_layers = [name for name in layers if name != DIRECT_LAYER] if cams else []
        vjp_inputs = [acts[name] for name in vjp_layers] + ([x] if "saliency" in methods else [])
        if targets and vjp_inputs:
            per_target = [torch.autograd.grad(logits[0, t], vjp_inputs, retain_graph=True) for t in targets]
            for i, name in enumerate(vjp_layers):
                a = acts[name][0].detach()
                g = torch.stack([grads[i][0] for grads in per_target])
                for method in cams:
                    add(method, name, FORMULAS[method](a, g), names, "truncated VJP")
            if "saliency" in methods:
                saliency = torch.stack([grads[-1][0, 0].abs() for grads in per_target])
                add("saliency", "input", saliency, names, "|d logit / d input|, same VJP")

        if "seggradcam" in methods:
            self._seg_gradcam(anatomy_logits, anatomy, acts, layers, add)
        if targets and "crm" in methods:
            self._crm(logits[0].detach(), acts, index, names, add)
        if targets and "smoothgrad" in methods:
            add(
                "smoothgrad",
                "input",
                self._smoothgrad(x.detach(), targets),
                names,
                "mean |gradient| over noisy copies",
            )
        if targets and "lime" in methods:
            from cxrxai.explain.perturbation import lime_maps

            s = self.settings
            maps = lime_maps(net, x.detach(), targets, s.lime_samples, s.lime_segments, s.perturbation_batch)
            add("lime", "input", maps, names, f"captum Lime, SLIC superpixels, {s.lime_samples} samples")
        if targets and "occlusion" in methods:
            from cxrxai.explain.perturbation import occlusion_maps

            window = max(2, int(round(x.shape[-1] * self.settings.occlusion_fraction)))
            maps = occlusion_maps(net, x.detach(), targets, window, self.settings.perturbation_batch)
            add("occlusion", "input", maps, names, f"captum Occlusion, {window} px window")

        _lung_statistics(result.heatmaps, lungs, lung_mask)
        return result

    # ----------------------------------------------------------------------------------------------------
    def _seg_gradcam(self, anatomy_logits, anatomy, acts, layers, add) -> None:
        """Seg-Grad-CAM (Vinogradova et al.): back-propagate the sum of the structure's logits inside its
        own thresholded (detached) mask, to every layer at once."""
        names = list(self.bundle.spec.anatomy)
        layer_names = list(layers)
        activations = [acts[n] for n in layer_names]
        threshold = self.bundle.spec.anatomy_threshold
        per_structure: list[tuple[torch.Tensor, ...]] = []
        for s in range(len(names)):
            mask = (anatomy[s] >= threshold).float()
            target = (anatomy_logits[0, s] * mask).sum()
            if mask.sum() == 0:
                per_structure.append(tuple(torch.zeros_like(a) for a in activations))
            else:
                per_structure.append(torch.autograd.grad(target, activations, retain_graph=True))
        for i, layer in enumerate(layer_names):
            g = torch.stack([grads[i][0] for grads in per_structure])
            add(
                "seggradcam",
                layer,
                gradcam(activations[i][0].detach(), g),
                names,
                "VJP of the masked logit sum",
            )

    def _crm(self, logits: torch.Tensor, acts, index: torch.Tensor, names: list[str], add) -> None:
        net = self.network
        head = net.head_weights().detached()
        direct = crm_maps.closed_form(logits, acts[DIRECT_LAYER][0].detach(), head.average, head.maximum)
        add("crm", DIRECT_LAYER, direct[index], names, "closed form: exact for the pooled head")
        add(
            "crm",
            DIRECT_LAYER,
            direct.sum(0, keepdim=True),
            [ALL_FINDINGS],
            "closed form, summed over all outputs",
        )
        depth = len(net.encoder)
        skips = [acts[f"encoder{i + 1}"].detach() for i in range(depth)]
        decoded = [acts[f"decoder{i}"].detach() for i in range(depth, 0, -1)]
        exact = crm_maps.exact_from_bottleneck(
            net, logits, acts["bottleneck"].detach(), skips, decoded, self.settings.crm_chunk
        )
        add("crm", "bottleneck", exact[index], names, "exact: local partial forward passes per removed cell")
        add("crm", "bottleneck", exact.sum(0, keepdim=True), [ALL_FINDINGS], "exact, summed over all outputs")

    def _smoothgrad(self, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
        """SmoothGrad (Smilkov et al. 2017): mean |d logit / d input| over noisy copies of the input.

        One copy at a time (one forward, one truncated VJP per finding): on CPU this measured about twice as
        fast per copy as one forward of a batch of copies followed by a VJP per finding over the batch.
        """
        s = self.settings
        generator = torch.Generator(device=x.device).manual_seed(s.seed)
        sigma = s.smoothgrad_noise * float(x.max() - x.min() or 1.0)
        noise = (
            torch.randn((s.smoothgrad_samples, *x.shape[1:]), generator=generator, device=x.device) * sigma
        )
        total = torch.zeros((len(targets), *x.shape[2:]), dtype=x.dtype, device=x.device)
        with torch.enable_grad():
            for sample in noise:
                noisy = (x + sample[None]).requires_grad_(True)
                logits, _ = self.network(noisy)
                for j, t in enumerate(targets):
                    total[j] += torch.autograd.grad(logits[0, t], noisy, retain_graph=True)[0][0, 0].abs()
        return total / s.smoothgrad_samples

    # ----------------------------------------------------------------------------------------------------
    def _assemble(self, raw: RawExplanation, radiograph: Radiograph, geometry) -> Explanation:
        spec = self.bundle.spec
        probabilities = torch.sigmoid(raw.logits).cpu().numpy()
        anatomy = raw.anatomy.cpu().numpy()
        masks: np.ndarray = anatomy >= spec.anatomy_threshold
        ctr = cardiothoracic_ratio(masks[2], masks[list(LUNG_CHANNELS)].any(axis=0))
        return Explanation(
            findings=[
                FindingPrediction(name, float(p), float(spec.thresholds[name]))
                for name, p in zip(spec.findings, probabilities, strict=True)
            ],
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
            },
            heatmaps={h.key: h for h in raw.heatmaps},
        )


def _head_rows(head: HeadWeights, index: torch.Tensor) -> HeadWeights:
    """The head's weights for the chosen findings only."""
    maximum = None if head.maximum is None else head.maximum[index]
    return HeadWeights(head.bottleneck[index], head.average[index], maximum, head.bias[index])


def fused_contributions(bottleneck: torch.Tensor, direct: torch.Tensor, head: HeadWeights) -> torch.Tensor:
    """T x N x N signed contribution density of the pooled layers, summing exactly to logit - bias.

    logit_c - b_c = sum over the pooled layers of each cell's share (`cams.pooled_contributions`: CAM / Z,
    and the max-pooled term at each channel's max cell). Each bottleneck cell's share is spread evenly over
    the r x r working cells it covers, so the sum is preserved; adding maps this way, rather than averaging
    min-max-normalised maps, keeps each layer's real weight. `head` holds the rows of the T targets.
    """
    coarse = pooled_contributions(bottleneck.detach(), head.bottleneck)
    r = direct.shape[1] // bottleneck.shape[1]
    spread = coarse.repeat_interleave(r, dim=1).repeat_interleave(r, dim=2) / (r * r)
    return spread + pooled_contributions(direct.detach(), head.average, head.maximum)


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


def check_methods(methods: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(m.strip().lower() for m in methods))
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; choose from: {', '.join(METHODS)}")
    return chosen
