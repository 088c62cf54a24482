"""What every explanation method reads: one forward pass of one input, its hooked activations, and the
gradients the methods share, computed once and only when a method asks for them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from cxrxai.model.network import CXRUNet, HeadWeights

DIRECT_LAYER = "decoder1"  # reaches the logits only through the pooled head: closed forms there
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


class LayerMaps(NamedTuple):
    """One method's maps at one layer: T x N x N values, one label per map, and how they were computed."""

    layer: str
    maps: torch.Tensor
    labels: list[str]
    note: str


@dataclass
class ForwardPass:
    network: CXRUNet
    x: torch.Tensor  # 1 x 1 x N x N, requiring grad when a method needs the input gradient
    logits: torch.Tensor  # 1 x C, attached to the graph when one is kept
    anatomy_logits: torch.Tensor  # 1 x S x N x N
    anatomy_masks: torch.Tensor  # S x N x N bool, post-processed: the masks every result uses
    activations: dict[str, torch.Tensor]  # every hooked layer's output
    targets: list[int]  # finding indices
    names: list[str]  # their names, the maps' labels
    head: HeadWeights  # the pooled head's rows of the targets
    anatomy_names: tuple[str, ...]
    settings: ExplainerSettings
    layer_gradient: bool = False  # whether the shared VJP returns every gradient layer's gradient
    input_gradient: bool = False  # whether it also reaches the input
    _memo: dict[str, Any] = field(default_factory=dict)

    @property
    def index(self) -> torch.Tensor:
        return torch.tensor(self.targets, dtype=torch.long, device=self.x.device)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` the first time `key` is asked for; methods that share a result share the work."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def gradient_layers(self) -> list[str]:
        """The layers the shared VJP reaches: all hooked layers but the closed-form one."""
        return [name for name in self.activations if name != DIRECT_LAYER]

    def _target_gradients(self) -> list[tuple[torch.Tensor, ...]]:
        """One truncated VJP per target to every gradient layer (and the input): all layers and all
        gradient methods of that finding share it; parameter gradients are never computed."""
        inputs = [self.activations[name] for name in self.gradient_layers] if self.layer_gradient else []
        if self.input_gradient:
            inputs.append(self.x)
        return [torch.autograd.grad(self.logits[0, t], inputs, retain_graph=True) for t in self.targets]

    def layer_gradients(self, layer: str) -> torch.Tensor:
        """T x K x h x w: d logit_t / d activation at `layer`."""
        if not self.layer_gradient:
            raise RuntimeError("layer gradients were not requested: declare Need.LAYER_GRADIENTS")
        per_target = self.once("target gradients", self._target_gradients)
        i = self.gradient_layers.index(layer)
        return torch.stack([grads[i][0] for grads in per_target])

    def input_gradients(self) -> torch.Tensor:
        """T x N x N: d logit_t / d input pixel."""
        if not self.input_gradient:
            raise RuntimeError("the input gradient was not requested: declare Need.INPUT_GRADIENT")
        per_target = self.once("target gradients", self._target_gradients)
        return torch.stack([grads[-1][0, 0] for grads in per_target])
