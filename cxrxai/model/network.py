"""A MONAI U-Net with two outputs: lung / heart segmentation and 14 chest X-ray observations.

The parameters live in `monai.networks.nets.UNet` (state-dict keys are MONAI's), but we run its forward
pass level by level instead of through the nested `SkipConnection`s: the result is identical (tested),
and every encoder level, the bottleneck and every decoder level becomes a named module whose output the
explanation engine can hook, and the classification head can pool the bottleneck.

Head: logits = W [GAP(bottleneck) ; GAP(decoder1)] + b, a single linear layer over globally average-pooled
features, or with `max_pool` W [GAP(bottleneck) ; GAP(decoder1) ; GMP(decoder1)] + b. The max term is there
for small findings: a rib fracture covers a few dozen of decoder1's 16,384 cells at 128 px, so average
pooling dilutes its evidence several hundred-fold before the linear layer sees it, and the max does not.
That structure is what the explanation engine exploits: `decoder1` reaches the logits only through the
pooled head, so its Grad-CAM, HiResCAM, CAM and CRM have closed forms (the max adds one cell per
channel); the bottleneck also feeds the decoder, so it needs a vector-Jacobian product (and partial
forward passes for exact CRM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from monai.networks.nets import UNet
from torch import nn

from cxrxai.errors import CXRXAIError


@dataclass(frozen=True)
class NetworkConfig:
    """Hyper-parameters stored in the bundle (`metadata.json` -> cxrxai.network)."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    features: int = 16
    num_res_units: int = 1
    num_findings: int = 14
    num_anatomy: int = 3
    dropout: float = 0.0
    max_pool: bool = False  # the head also reads GMP(decoder1)

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("channels", "strides"):
            if key in known:
                known[key] = tuple(int(v) for v in known[key])
        return cls(**known)

    def as_dict(self) -> dict:
        """Plain JSON values; `max_pool` only when set, so bundles written before it existed keep their
        content hash."""
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}
        if not self.max_pool:
            del data["max_pool"]
        return data



def network_from_options(
    channels: list[int] | None, strides: list[int] | None, max_pool: bool = False
) -> NetworkConfig:
    """The NetworkConfig that `--channels` / `--strides` / `--max-pool` ask for (defaults where absent),
    checked here so a bad value is one line, not a traceback from MONAI."""
    levels = tuple(channels) if channels else NetworkConfig().channels
    steps = tuple(strides) if strides else (2,) * (len(levels) - 1)
    if len(steps) != len(levels) - 1 or any(s not in (1, 2) for s in steps):
        raise CXRXAIError(
            f"--strides needs {len(levels) - 1} values of 1 or 2 (one per level but the last), got "
            f"{' '.join(map(str, steps))}"
        )
    return NetworkConfig(channels=levels, strides=steps, max_pool=max_pool)

class HeadWeights(NamedTuple):
    """The pooled linear head split by the pooled feature it reads (C = findings, K = channels)."""

    bottleneck: torch.Tensor  # C x K_bottleneck, on GAP(bottleneck)
    average: torch.Tensor  # C x K_decoder1, on GAP(decoder1)
    maximum: torch.Tensor | None  # C x K_decoder1, on GMP(decoder1); None without max pooling
    bias: torch.Tensor  # C

    def detached(self) -> HeadWeights:
        maximum = None if self.maximum is None else self.maximum.detach()
        return HeadWeights(self.bottleneck.detach(), self.average.detach(), maximum, self.bias.detach())


def global_max(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """B x K max over each map and its flat (row-major) cell index.

    The head pools with this rather than `amax`: autograd sends the whole gradient to the returned cell
    (amax would split it among ties), so the engine's closed forms, which read the same index, equal it.
    """
    values, index = features.flatten(2).max(dim=2)
    return values, index


class CXRUNet(nn.Module):
    """Two-head U-Net: forward(x: B x 1 x N x N) -> (finding logits B x 14, anatomy logits B x 3 x N x N)."""

    def __init__(
        self,
        channels: tuple[int, ...] | list[int] = (16, 32, 64, 128),
        strides: tuple[int, ...] | list[int] = (2, 2, 2),
        features: int = 16,
        num_res_units: int = 1,
        num_findings: int = 14,
        num_anatomy: int = 3,
        dropout: float = 0.0,
        max_pool: bool = False,
    ) -> None:
        super().__init__()
        if len(strides) != len(channels) - 1:
            raise ValueError(
                f"need len(strides) == len(channels) - 1, got {len(strides)} and {len(channels)}"
            )
        self.unet = UNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=features,
            channels=tuple(channels),
            strides=tuple(strides),
            num_res_units=num_res_units,
            norm="batch",
            dropout=dropout,
        )
        downs, bottleneck, ups = _split_levels(self.unet.model)
        # Plain lists would hide the modules from named_modules(); ModuleList re-registers the same objects.
        self.encoder = nn.ModuleList(downs)
        self.bottleneck = bottleneck
        self.decoder = nn.ModuleList(ups)  # deepest first
        self.decoder_activation = nn.ReLU()  # "decoder1": the last decoder features, >= 0
        self.segmentation_head = nn.Conv2d(features, num_anatomy, kernel_size=1)
        self.max_pool = max_pool
        self.classifier = nn.Linear(channels[-1] + features * (2 if max_pool else 1), num_findings)
        self.bottleneck_channels = channels[-1]
        self.features = features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips, bottleneck = self.encode(x)
        return self.decode(bottleneck, skips)

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for down in self.encoder:
            x = down(x)
            skips.append(x)
        return skips, self.bottleneck(x)

    def decode(
        self, bottleneck: torch.Tensor, skips: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rest of the network from the bottleneck: used by forward() and by exact bottleneck CRM."""
        return self.heads(bottleneck, self.decode_features(bottleneck, skips))

    def decode_features(self, bottleneck: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """decoder1: the last decoder level's features after their ReLU (B x features x N x N)."""
        x = bottleneck
        for up, skip in zip(self.decoder, reversed(skips), strict=True):
            x = up(torch.cat([skip, x], dim=1))  # MONAI SkipConnection: cat([input, submodule(input)])
        return self.decoder_activation(x)

    def heads(self, bottleneck: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(finding logits, anatomy logits) from the bottleneck and decoder1."""
        pooled = [bottleneck.mean(dim=(2, 3)), features.mean(dim=(2, 3))]
        if self.max_pool:
            pooled.append(global_max(features)[0])
        return self.classifier(torch.cat(pooled, dim=1)), self.segmentation_head(features)

    def layers(self) -> dict[str, nn.Module]:
        """Hookable layers from the shallowest encoder level to the last decoder level, by display name."""
        n = len(self.encoder)
        named: dict[str, nn.Module] = {f"encoder{i + 1}": m for i, m in enumerate(self.encoder)}
        named["bottleneck"] = self.bottleneck
        for i, up in enumerate(self.decoder[:-1]):
            named[f"decoder{n - i}"] = up
        named["decoder1"] = self.decoder_activation
        return named

    def head_weights(self) -> HeadWeights:
        """The pooled linear head's weights, split by pooled feature."""
        w = self.classifier.weight
        kb, kd = self.bottleneck_channels, self.features
        maximum = w[:, kb + kd : kb + 2 * kd] if self.max_pool else None
        return HeadWeights(w[:, :kb], w[:, kb : kb + kd], maximum, self.classifier.bias)


class FindingLogits(nn.Module):
    """The findings output alone, for single-output tools (captum, monai.visualize, pytorch-grad-cam)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.net = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]



class FindingProbabilities(FindingLogits):
    """forward(x) -> sigmoid finding probabilities: the output LIME and occlusion perturb."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(super().forward(x))

def _split_levels(model: nn.Module) -> tuple[list[nn.Module], nn.Module, list[nn.Module]]:
    """Unpack MONAI's nested Sequential(down, SkipConnection(sub), up): downs, bottom, ups (deepest first)."""
    downs: list[nn.Module] = []
    ups: list[nn.Module] = []
    block: nn.Module = model
    while isinstance(block, nn.Sequential) and len(block) == 3:
        down, skip, up = block[0], block[1], block[2]
        downs.append(down)
        ups.append(up)
        block = skip.submodule  # type: ignore[assignment]
    ups.reverse()
    return downs, block, ups


def build_network(config: NetworkConfig) -> CXRUNet:
    return CXRUNet(**config.__dict__)
