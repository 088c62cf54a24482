"""Training throughput of `cxrxai train`: batched augmentation and torch.compile against what they replace.

Two questions, each answered against its reference measured in the same run:

- augmentation: `BatchAugmentation` on a batch versus MONAI's per-image RandAffined + RandAdjustContrastd +
  RandGaussianNoised with the same ranges (what the trainer used before), run by a DataLoader as it was;
- one training step (forward, joint loss, backward, AdamW), eager versus `torch.compile`d, and what an
  epoch of the default recipe (3,600 training images) costs with the old and the new pipeline.

Images are generated phantoms (`cxrxai phantoms`, 256 rows) preprocessed to the input size, so the
augmentation sees real masks; step timing does not depend on the pixel values.

    python bench/bench_train.py [--sizes 128 256] [--batch 16] [--repeat 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monai.transforms import (  # noqa: E402
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
)
from torch.utils.data import DataLoader  # noqa: E402

from cxrxai.datasets.training import load_samples  # noqa: E402
from cxrxai.model.bundle import Preprocessing  # noqa: E402
from cxrxai.model.network import NetworkConfig, build_network  # noqa: E402
from cxrxai.phantoms.cli import generate  # noqa: E402
from cxrxai.train.trainer import BatchAugmentation, JointLoss, RadiographDataset  # noqa: E402

EPOCH_IMAGES = 3600  # the default recipe: 4,000 phantoms less the tenth held back for thresholds


def monai_per_image(size: int) -> Compose:
    """The per-image pipeline BatchAugmentation replaced (same ranges)."""
    return Compose(
        [
            RandAffined(
                keys=("image", "masks"),
                prob=0.8,
                rotate_range=0.08,
                scale_range=0.08,
                translate_range=(size * 0.04, size * 0.04),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandAdjustContrastd(keys="image", prob=0.3, gamma=(0.8, 1.25)),
            RandGaussianNoised(keys="image", prob=0.3, std=0.02),
        ]
    )


class PerImageAugmented(torch.utils.data.Dataset):
    def __init__(self, cached: RadiographDataset, transform: Compose) -> None:
        self.cached, self.transform = cached, transform

    def __len__(self) -> int:
        return len(self.cached)

    def __getitem__(self, index: int) -> dict:
        item = self.cached[index]
        out = self.transform({"image": item["image"], "masks": item["masks"]})
        return {key: torch.as_tensor(value, dtype=torch.float32) for key, value in out.items()}


def median_seconds(work, repeat: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        generate(args.batch, Path(tmp), 0, {"png"}, 256, workers=2)
        samples = load_samples(Path(tmp), "chexpert", "train", "ones")
        for size in args.sizes:
            cached = RadiographDataset(samples, Preprocessing(input_size=size), cache=True)
            batch = next(iter(DataLoader(cached, batch_size=args.batch)))
            monai = DataLoader(PerImageAugmented(cached, monai_per_image(size)), batch_size=args.batch)
            ours = BatchAugmentation(0)
            t_monai = median_seconds(lambda loader=monai: next(iter(loader)), args.repeat)
            t_ours = median_seconds(lambda b=batch, aug=ours: aug(b["image"], b["masks"]), args.repeat)
            rows.append((f"augment a batch, {size} px", t_ours, t_monai, "MONAI per image"))
            steps = {}
            for compiled in (False, True):
                network = build_network(NetworkConfig()).train()
                loss = JointLoss(torch.ones(14), 1.0)
                optimiser = torch.optim.AdamW(network.parameters(), lr=1e-3)
                forward = torch.compile(network) if compiled else network

                def step(forward=forward, loss=loss, optimiser=optimiser, b=batch) -> None:
                    logits, anatomy = forward(b["image"])
                    total, _ = loss(logits, anatomy, b["labels"], b["masks"], b["has_masks"])
                    optimiser.zero_grad()
                    total.backward()
                    optimiser.step()

                began = time.perf_counter()
                step()  # compiles on the first call
                first = time.perf_counter() - began
                steps[compiled] = median_seconds(step, args.repeat)
                if compiled:
                    rows.append((f"torch.compile, {size} px (first step)", first, 0.0, ""))
            rows.append((f"training step, {size} px", steps[True], steps[False], "eager"))
            per_epoch = EPOCH_IMAGES / args.batch
            rows.append(
                (
                    f"epoch of 3,600 images, {size} px",
                    per_epoch * (steps[True] + t_ours),
                    per_epoch * (steps[False] + t_monai),
                    "eager + MONAI per image",
                )
            )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print("| work | ours (s) | reference (s) | reference | speed-up |")
    print("|---|---:|---:|---|---:|")
    for name, ours_s, reference_s, reference in rows:
        ratio = f"{reference_s / ours_s:.1f}x" if reference_s else ""
        shown = f"{reference_s:.3f}" if reference_s else ""
        print(f"| {name} | {ours_s:.3f} | {shown} | {reference} | {ratio} |")


if __name__ == "__main__":
    main()
