"""`cxrxai train`: the two-head U-Net on CheXpert / MIMIC-CXR layouts, written as a complete MONAI bundle.

Joint loss: multi-label BCE on the findings (uncertain labels ignored, or mapped to 1 / 0, by policy;
positive weights for class balance) plus Dice + BCE on the anatomy masks for the samples that have them,
and, with `finding_mask_weight`, Dice + BCE (and, with `finding_pointing_weight`, a smooth pointing game)
on a training-only map of each finding on decoder1 (`FindingMapHead`), wherever a finding's mask is known.
Augmentation (`BatchAugmentation`) is geometric and photometric but never a left-right flip: the heart
and the left / right lung labels depend on the side. Preprocessing is the bundle's own
(`cxrxai.model.preprocess`), so the trained model sees exactly what inference feeds it. Checkpoints every
epoch; `--resume` continues from the last one with the optimiser and random state; the same seed gives the
same model. `--compile` trains a torch.compile'd network (1.5x faster steps; needs g++ on the CPU).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceLoss
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cxrxai.datasets.training import Sample, load_samples, positive_weights
from cxrxai.errors import CXRXAIError
from cxrxai.io import read_radiograph
from cxrxai.labels import ANATOMY, FINDINGS, slug
from cxrxai.model.bundle import BundleSpec, Preprocessing, write_bundle
from cxrxai.model.network import CXRUNet, NetworkConfig, build_network
from cxrxai.model.preprocess import geometry_transform, prepare
from cxrxai.train import FINDING_MAPS

NO_FINDING = FINDINGS.index("No Finding")  # not localised: never mask-supervised


@dataclass
class TrainConfig:
    data: Path
    layout: str
    out: Path
    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    input_size: int = 256
    network: NetworkConfig = field(default_factory=NetworkConfig)
    uncertain: str = "ones"
    segmentation_weight: float = 1.0
    finding_mask_weight: float = 0.0  # > 0: supervise where each finding is, from its mask where known
    finding_mask_map: str = "head"  # which map the masks supervise (FindingMapHead)
    finding_pointing_weight: float = 0.0  # > 0: also punish a map's peak outside the finding's mask
    finding_pointing_skip: tuple[str, ...] = ()  # findings the pointing term leaves out
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    cache: bool = True
    resume: bool = False
    compile: bool = False
    name: str = "cxrxai_unet"
    version: str = "1.0.0"
    progress: bool = True

    def __post_init__(self) -> None:
        """Checked here, not in one command's parser: `cxrxai train` and `make model` both build this."""
        for option in ("finding_mask_weight", "finding_pointing_weight"):
            if getattr(self, option) < 0:
                flag = "--" + option.replace("_", "-")
                raise CXRXAIError(f"{flag} must be 0 (off) or positive, got {getattr(self, option)}")
        unknown = [name for name in self.finding_pointing_skip if name not in FINDINGS]
        if unknown:
            raise CXRXAIError(
                f"--finding-pointing-skip: no finding named {', '.join(map(repr, unknown))}; "
                f"one of: {', '.join(FINDINGS)}"
            )


class BatchAugmentation:
    """Random rotation, scale and shift (the masks follow, nearest-neighbour), gamma contrast and Gaussian
    noise, drawn per image and applied to a whole batch at once on the training device.

    Why not MONAI's per-image RandAffined / RandAdjustContrastd / RandGaussianNoised, which this replaces
    with the same ranges: on 2 CPU cores they cost 0.06 s per batch of 16 at 128 px, about a fifth of a
    training step, in the single data-loading process; this costs 0.01 s (bench/bench_train.py). The draws
    come from one seeded generator whose state the checkpoint keeps.
    """

    def __init__(
        self,
        seed: int,
        affine_probability: float = 0.8,
        rotate: float = 0.08,
        scale: float = 0.08,
        shift: float = 0.04,
        contrast_probability: float = 0.3,
        gamma: tuple[float, float] = (0.8, 1.25),
        noise_probability: float = 0.3,
        noise_std: float = 0.02,
    ) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.affine_probability, self.rotate, self.scale, self.shift = (
            affine_probability,
            rotate,
            scale,
            shift,
        )
        self.contrast_probability, self.gamma = contrast_probability, gamma
        self.noise_probability, self.noise_std = noise_probability, noise_std

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=self.generator)

    def _chosen(self, n: int, probability: float) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) < probability

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images B x 1 x N x N, masks B x K x N x N (0 / 1) -> augmented copies on the same device."""
        n, device = images.shape[0], images.device
        affine = self._chosen(n, self.affine_probability)
        angle = torch.where(affine, self._uniform(n, -self.rotate, self.rotate), 0.0)
        zoom = torch.where(affine, 1 + self._uniform(n, -self.scale, self.scale), 1.0)
        shift = torch.where(affine[:, None], self._uniform(2 * n, -self.shift, self.shift).view(n, 2), 0.0)
        # affine_grid maps output to input coordinates in [-1, 1]: a shift of `shift` of the size is 2 * shift
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, 2 * shift[:, 0]], 1), torch.stack([sin, cos, 2 * shift[:, 1]], 1)], 1
        ).to(device)
        grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
        images = nn.functional.grid_sample(images, grid, mode="bilinear", align_corners=False)
        masks = nn.functional.grid_sample(masks, grid, mode="nearest", align_corners=False)
        contrast = self._chosen(n, self.contrast_probability).to(device)
        gamma = self._uniform(n, *self.gamma).to(device)
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        span = images.amax(dim=(1, 2, 3), keepdim=True) - low
        adjusted = ((images - low) / (span + 1e-7)).pow(gamma.view(-1, 1, 1, 1)) * span + low
        images = torch.where(contrast.view(-1, 1, 1, 1), adjusted, images)
        noisy = self._chosen(n, self.noise_probability).to(device).view(-1, 1, 1, 1)
        noise = torch.randn(images.shape, generator=self.generator).to(device) * self.noise_std
        return images + noise * noisy, masks


class RadiographDataset(Dataset):
    """Preprocessed image (1 x N x N), labels (14, NaN = ignore), masks (3 x N x N), has-masks flag; with
    `finding_masks` also finding masks (14 x N x N, bool) and which of them are known (14, bool).

    A finding's mask is known where its file exists in the sample's masks folder, and known to be empty
    where the finding is labelled absent and the sample has a masks folder; elsewhere (a positive without
    a mask, No Finding, a sample without masks) it is not scored.
    With `cache`, each image and its masks are decoded and letterboxed once and kept in memory (before
    augmentation): on 2 CPU cores, decoding and resizing the PNGs otherwise costs as much as a training
    step at 128 px. 4,000 images at 128 px take about 1 GB, and 1 GB more with finding masks.
    """

    def __init__(
        self,
        samples: list[Sample],
        preprocessing: Preprocessing,
        cache: bool = False,
        finding_masks: bool = False,
    ) -> None:
        self.samples = samples
        self.cache: dict[int, tuple[torch.Tensor, ...]] | None = {} if cache else None
        self.preprocessing = preprocessing
        self.finding_masks = finding_masks
        self.geometry_only = geometry_transform(preprocessing)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        if self.cache is not None and index in self.cache:
            loaded = self.cache[index]
        else:
            loaded = self._load(sample)
            if self.finding_masks:
                loaded = (*loaded, *self._finding_masks(sample))
            if self.cache is not None:
                self.cache[index] = loaded
        item = {"image": loaded[0], "masks": loaded[1]}
        if self.finding_masks:
            item["finding_masks"], item["finding_known"] = loaded[2], loaded[3]
        item["labels"] = torch.tensor(sample.labels, dtype=torch.float32)
        item["has_masks"] = torch.tensor(sample.masks is not None)
        return item

    def _load(self, sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
        radiograph = read_radiograph(sample.image)
        image, _ = prepare(radiograph.pixels, self.preprocessing)
        size = self.preprocessing.input_size
        if sample.masks is None:  # `prepare` gives a plain tensor, not a MONAI MetaTensor
            return image[0], torch.zeros((len(ANATOMY), size, size))
        return image[0], self._read_masks(sample.masks).float()

    def _coverage(self, paths: Iterable[Path]) -> torch.Tensor:
        """Mask PNGs (non-zero = inside) letterboxed like their image: K x N x N, the share of each input
        pixel that is inside (area resampling)."""
        planes = [np.asarray(Image.open(path)) > 0 for path in paths]
        stacked = torch.as_tensor(np.stack(planes).astype(np.float32))
        return torch.as_tensor(self.geometry_only(stacked), dtype=torch.float32).as_subclass(torch.Tensor)

    def _read_masks(self, paths: Iterable[Path]) -> torch.Tensor:
        """K x N x N, bool: the input pixels more than half inside."""
        return self._coverage(paths) > 0.5

    def _finding_masks(self, sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.preprocessing.input_size
        planes = torch.zeros((len(FINDINGS), size, size), dtype=torch.bool)
        known = torch.zeros(len(FINDINGS), dtype=torch.bool)
        if sample.mask_folder is None:
            return planes, known
        files = {j: sample.mask_folder / f"{slug(f)}.png" for j, f in enumerate(FINDINGS) if j != NO_FINDING}
        present = {j: path for j, path in files.items() if path.is_file()}
        if present:
            coverage = self._coverage(present.values())
            masks = coverage > 0.5
            # a finding smaller than half an input pixel (a thin opacity at a coarse input size) keeps
            # every pixel it touches: an empty map of a present finding would teach "nothing here"
            vanished = ~masks.flatten(1).any(dim=1)
            masks[vanished] = coverage[vanished] > 0
            planes[list(present)] = masks
        for j in files:
            known[j] = j in present or sample.labels[j] == 0.0
        return planes, known


class FindingMapHead(nn.Module):
    """Training only: the network plus a map per finding on decoder1, supervised by the findings' masks.

    Why: the classification head learns from one label per image, so nothing tells decoder1 where a small
    finding lies. Two maps can carry the masks' signal (`kind`):
    - "head": a separate 1 x 1 convolution (on phantoms, 4-epoch probes lifted Fracture and Lung Lesion
      most). It is thrown away, so the classifier's own maps are only shaped indirectly.
    - "gradcam": decoder1's own Grad-CAM map before its ReLU, sum_k (W_avg + W_max)_ck A_k, with a learnt
      positive scale and an offset per finding: the map the engine shows is the map that learns where the
      finding is (attention supervision, as in Li et al. 2018's GAIN with pixel-level supervision).
    Either way nothing is added to the bundle: the shipped network, and the explanation engine's closed
    forms over its pooled head, are the same with or without it.
    """

    def __init__(self, network: CXRUNet, kind: str = "head") -> None:
        super().__init__()
        if kind not in FINDING_MAPS:
            raise ValueError(f"unknown finding map {kind!r}; one of: {', '.join(FINDING_MAPS)}")
        self.network = network
        self.kind = kind
        if kind == "head":
            self.finding_maps = nn.Conv2d(network.features, len(FINDINGS), kernel_size=1)
        else:  # softplus(0) ~ 0.69 times the map, and a background prior of about 12 %
            self.scale = nn.Parameter(torch.zeros(len(FINDINGS)))
            self.offset = nn.Parameter(torch.full((len(FINDINGS),), -2.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        skips, bottleneck = self.network.encode(x)
        features = self.network.decode_features(bottleneck, skips)
        logits, anatomy = self.network.heads(bottleneck, features)
        if self.kind == "head":
            return logits, anatomy, self.finding_maps(features)
        head = self.network.head_weights()
        weights = head.average if head.maximum is None else head.average + head.maximum
        cam = torch.einsum("ck,bkhw->bchw", weights, features)
        scale = nn.functional.softplus(self.scale)[None, :, None, None]
        return logits, anatomy, scale * cam + self.offset[None, :, None, None]


class JointLoss(nn.Module):
    pos_weight: torch.Tensor
    pointed: torch.Tensor  # 1 for the findings the pointing term covers, 0 for those it skips

    def __init__(
        self,
        pos_weight: torch.Tensor,
        segmentation_weight: float,
        finding_mask_weight: float = 0.0,
        pointing_weight: float = 0.0,
        pointing_skip: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)
        pointed = [name not in pointing_skip for name in FINDINGS]
        self.register_buffer("pointed", torch.tensor(pointed, dtype=torch.float32))
        self.segmentation_weight = segmentation_weight
        self.finding_mask_weight = finding_mask_weight
        self.pointing_weight = pointing_weight
        self.dice = DiceLoss(sigmoid=True, reduction="none")

    def forward(
        self,
        logits,
        anatomy,
        labels,
        masks,
        has_masks,
        finding_maps=None,
        finding_masks=None,
        finding_known=None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        known = ~torch.isnan(labels)
        targets = torch.nan_to_num(labels, nan=0.0)
        bce = nn.functional.binary_cross_entropy_with_logits(
            logits, targets, pos_weight=self.pos_weight, reduction="none"
        )
        classification = (bce * known).sum() / known.sum().clamp(min=1)
        segmentation = torch.zeros((), device=logits.device)
        if has_masks.any():
            chosen = has_masks.bool()
            dice = self.dice(anatomy[chosen], masks[chosen]).mean()
            pixel = nn.functional.binary_cross_entropy_with_logits(anatomy[chosen], masks[chosen])
            segmentation = dice + pixel
        total = classification + self.segmentation_weight * segmentation
        parts = {
            "classification": float(classification.detach()),
            "segmentation": float(segmentation.detach()),
        }
        if finding_maps is not None:
            located = self.finding_mask_loss(finding_maps, finding_masks, finding_known)
            total = total + self.finding_mask_weight * located
            parts["finding masks"] = float(located.detach())
        return total, parts

    def finding_mask_loss(self, maps, masks, known) -> torch.Tensor:
        """Pixel BCE over every known (image, finding) map plus Dice over the known non-empty ones: BCE
        alone would be content to mark nothing, as most of a small finding's map is background. With
        `pointing_weight`, over the non-empty ones also softplus(peak outside the mask - peak inside), the
        pointing game made smooth: BCE and Dice hardly notice one bright spot outside a small mask, yet
        that spot is what the pointing game and a reader see first. The default model's misses were such
        spots: Lung Lesion's map peaked on a co-present consolidation or pneumonia in 12 of its 17 misses,
        Fracture's on pleural plaques and nodules (the recipe comment in default_model has the full run).

        Class-balanced: each term is averaged per finding first, then over the findings the batch holds.
        Averaged over (image, finding) pairs instead, the common findings' masks (support devices,
        opacities, effusions) outweigh a batch's one fracture or nodule many times over, and the rare
        small findings are the ones whose maps strayed into the other opacities."""
        known = known.float()
        bce = nn.functional.binary_cross_entropy_with_logits(maps, masks, reduction="none").mean(dim=(2, 3))
        present = (masks.amax(dim=(2, 3)) > 0).float() * known
        dice = self.dice(maps, masks)[:, :, 0, 0]
        located = _mean_per_finding(bce, known) + _mean_per_finding(dice, present)
        if self.pointing_weight == 0:
            return located
        inside = masks > 0.5
        floor = torch.finfo(maps.dtype).min / 4  # "no pixel", and no overflow in the differences
        peak_inside = maps.masked_fill(~inside, floor).amax(dim=(2, 3))
        peak_outside = maps.masked_fill(inside, floor).amax(dim=(2, 3))
        gap = torch.where(present > 0, peak_outside - peak_inside, torch.zeros_like(peak_inside))
        pointing = nn.functional.softplus(gap)
        return located + self.pointing_weight * _mean_per_finding(pointing, present * self.pointed)


def _mean_per_finding(values: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Mean over the findings with any chosen image of each finding's mean over its chosen images
    (values and chosen: batch x findings); zero when nothing is chosen."""
    counts = chosen.sum(dim=0)
    per_finding = (values * chosen).sum(dim=0) / counts.clamp(min=1)
    held = (counts > 0).float()
    return (per_finding * held).sum() / held.sum().clamp(min=1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def tune_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per finding, the threshold maximising Youden's J on the validation split (0.5 where a finding has
    no positives or no negatives there)."""
    thresholds = {}
    for j, name in enumerate(FINDINGS):
        known = ~np.isnan(labels[:, j])
        y, p = labels[known, j], probabilities[known, j]
        if y.size == 0 or y.min() == y.max():
            thresholds[name] = 0.5
            continue
        candidates = np.unique(p)
        best, best_j = 0.5, -1.0
        for t in candidates:
            predicted = p >= t
            tpr = (predicted & (y == 1)).sum() / (y == 1).sum()
            fpr = (predicted & (y == 0)).sum() / (y == 0).sum()
            if tpr - fpr > best_j:
                best, best_j = float(t), float(tpr - fpr)
        thresholds[name] = best
    return thresholds


@torch.no_grad()
def predict(network: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    network.eval()
    probabilities, labels = [], []
    for batch in loader:
        logits, _ = network(batch["image"].to(device))
        probabilities.append(torch.sigmoid(logits).cpu().numpy())
        labels.append(batch["labels"].numpy())
    return np.concatenate(probabilities), np.concatenate(labels)


def train(config: TrainConfig) -> str:
    """Train, tune thresholds on the validation split, write the bundle; return its content hash."""
    seed_everything(config.seed)
    device = torch.device(config.device)
    preprocessing = Preprocessing(input_size=config.input_size)
    train_samples = load_samples(config.data, config.layout, "train", config.uncertain)
    try:
        valid_samples = load_samples(config.data, config.layout, "valid", config.uncertain)
    except CXRXAIError:
        valid_samples = []
    if not valid_samples:  # hold out a seeded tenth of the training set
        order = np.random.default_rng(config.seed).permutation(len(train_samples))
        cut = max(1, len(order) // 10)
        valid_samples = [train_samples[i] for i in order[:cut]]
        train_samples = [train_samples[i] for i in order[cut:]]
    if len(train_samples) < 2:
        raise CXRXAIError(f"{config.data}: too few training images ({len(train_samples)})")
    generator = torch.Generator().manual_seed(config.seed)
    augment = BatchAugmentation(config.seed)
    finding_masks = config.finding_mask_weight > 0
    train_loader = DataLoader(
        RadiographDataset(train_samples, preprocessing, cache=config.cache, finding_masks=finding_masks),
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=config.workers,
        drop_last=len(train_samples) > config.batch_size,
    )
    valid_loader = DataLoader(
        RadiographDataset(valid_samples, preprocessing, cache=False),
        batch_size=config.batch_size,
    )
    network = build_network(config.network).to(device)
    trained: nn.Module = (
        FindingMapHead(network, config.finding_mask_map).to(device) if finding_masks else network
    )
    loss_function = JointLoss(
        torch.as_tensor(positive_weights(train_samples)),
        config.segmentation_weight,
        config.finding_mask_weight,
        config.finding_pointing_weight,
        config.finding_pointing_skip,
    ).to(device)
    optimiser = torch.optim.AdamW(
        trained.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(config.epochs, 1))
    checkpoint = config.out / "checkpoints" / "last.pt"
    start = 0
    if config.resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        trained.load_state_dict(state["network"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        augment.generator.set_state(state["augmentation"])
        torch.set_rng_state(state["torch"])
        start = int(state["epoch"])
    # torch.compile fuses the network's kernels: 1.5x faster training steps at 128 px on 2 CPU cores
    # (bench/bench_train.py), for about a minute of compilation; it needs g++, so it is opt-in.
    step = torch.compile(trained) if config.compile else trained
    for epoch in range(start, config.epochs):
        trained.train()
        batches = _progress(train_loader, f"epoch {epoch + 1}/{config.epochs}", config.progress)
        for batch in batches:
            masks = batch["masks"].to(device)
            if finding_masks:  # one warp for anatomy and finding masks alike
                masks = torch.cat([masks, batch["finding_masks"].to(device).float()], dim=1)
            images, masks = augment(batch["image"].to(device), masks)
            logits, anatomy, *finding_maps = step(images)
            located = (
                (finding_maps[0], masks[:, len(ANATOMY) :], batch["finding_known"].to(device))
                if finding_masks
                else ()
            )
            loss, parts = loss_function(
                logits,
                anatomy,
                batch["labels"].to(device),
                masks[:, : len(ANATOMY)],
                batch["has_masks"].to(device),
                *located,
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if hasattr(batches, "set_postfix"):
                batches.set_postfix(loss=f"{float(loss.detach()):.3f}", seg=f"{parts['segmentation']:.3f}")
        schedule.step()
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "network": trained.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "generator": generator.get_state(),
                "augmentation": augment.generator.get_state(),
                "torch": torch.get_rng_state(),
                "epoch": epoch + 1,
            },
            checkpoint,
        )
    probabilities, labels = predict(network, valid_loader, device)
    spec = BundleSpec(
        name=config.name,
        version=config.version,
        network=config.network,
        preprocessing=preprocessing,
        thresholds=tune_thresholds(probabilities, labels),
        trained=True,
        description=(
            f"Trained by cxrxai train on {config.layout} layout data ({len(train_samples)} training images, "
            f"{config.epochs} epochs, seed {config.seed}, uncertain labels: {config.uncertain}"
            + (
                f", finding masks weighted {config.finding_mask_weight} on the {config.finding_mask_map} map"
                + (
                    f", their pointing game weighted {config.finding_pointing_weight}"
                    + (
                        f" (not {', '.join(config.finding_pointing_skip)})"
                        if config.finding_pointing_skip
                        else ""
                    )
                    if config.finding_pointing_weight > 0
                    else ""
                )
                if finding_masks
                else ""
            )
            + ")."
        ),
    )
    return write_bundle(config.out, spec, network.cpu())


def _progress(loader, description: str, enabled: bool):
    if not enabled:
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=description, unit="batch", file=sys.stderr, leave=False)
