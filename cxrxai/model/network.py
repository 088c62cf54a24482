"""A MONAI U-Net with two outputs: lung / heart segmentation and 14 chest X-ray observations.

The parameters live in `monai.networks.nets.UNet` (state-dict keys are MONAI's), but we run its forward
pass level by level instead of through the nested `SkipConnection`s: the result is identical (tested),
and every encoder level, the bottleneck and every decoder level becomes a named module whose output the
explanation engine can hook, and the classification head can pool the bottleneck.

Head: logits = W [GAP(bottleneck) ; GAP(decoder1)] + b, a single linear layer over globally average-pooled
features. That structure is what the explanation engine exploits: `decoder1` reaches the logits only
through the pooled head, so its Grad-CAM, HiResCAM, CAM and CRM have closed forms; the bottleneck also
feeds the decoder, so it needs a vector-Jacobian product (and partial forward passes for exact CRM).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.nets import UNet
from torch import nn


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

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("channels", "strides"):
            if key in known:
                known[key] = tuple(int(v) for v in known[key])
        return cls(**known)

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


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
        self.classifier = nn.Linear(channels[-1] + features, num_findings)
        self.bottleneck_channels = channels[-1]

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
        x = bottleneck
        for up, skip in zip(self.decoder, reversed(skips), strict=True):
            x = up(torch.cat([skip, x], dim=1))  # MONAI SkipConnection: cat([input, submodule(input)])
        features = self.decoder_activation(x)
        pooled = torch.cat([bottleneck.mean(dim=(2, 3)), features.mean(dim=(2, 3))], dim=1)
        return self.classifier(pooled), self.segmentation_head(features)

    def layers(self) -> dict[str, nn.Module]:
        """Hookable layers from the shallowest encoder level to the last decoder level, by display name."""
        n = len(self.encoder)
        named: dict[str, nn.Module] = {f"encoder{i + 1}": m for i, m in enumerate(self.encoder)}
        named["bottleneck"] = self.bottleneck
        for i, up in enumerate(self.decoder[:-1]):
            named[f"decoder{n - i}"] = up
        named["decoder1"] = self.decoder_activation
        return named

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_bottleneck C x Kb, W_decoder1 C x Kd, bias C) of the pooled linear head."""
        w = self.classifier.weight
        return w[:, : self.bottleneck_channels], w[:, self.bottleneck_channels :], self.classifier.bias


class FindingLogits(nn.Module):
    """The findings output alone, for single-output tools (captum, monai.visualize, pytorch-grad-cam)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.net = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


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
