"""Evaluation sets: the images, exact labels and masks that `cxrxai evaluate` scores a bundle against.

Three kinds of set:
- our phantoms: `ground_truth.json` beside the images (exact labels, anatomy and finding masks, CTR);
- a CheXpert / MIMIC-CXR layout: labels from the CSV (uncertain ignored), anatomy masks when given;
- a CheXlocalize-style set of real radiographs (Saporta et al. 2022): a `gt_segmentations_*.json` of
  COCO run-length-encoded pixel masks keyed by image id (`patient64541_study1_view1_frontal`) and
  pathology, beside the CheXpert-layout images. CheXlocalize segments every positive finding of its ten
  localisation tasks, so a non-empty mask means present and an empty one absent; its "Airspace
  Opacity" is CheXpert's Lung Opacity. The RLE is decoded with pycocotools, the reference decoder the
  CheXlocalize code itself uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxrxai.datasets.training import load_samples
from cxrxai.errors import CXRXAIError
from cxrxai.labels import ANATOMY, FINDINGS

LAYOUTS = ("chexpert", "mimic", "chexlocalize")
CHEXLOCALIZE_NAMES = {"Airspace Opacity": "Lung Opacity"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm")

# A mask is a PNG file (phantoms, CheXpert layout) or a COCO RLE dict (CheXlocalize); read_mask reads both.
MaskSource = Path | dict[str, Any]


@dataclass
class Case:
    image: Path
    labels: np.ndarray  # 14, NaN = unknown
    masks: dict[str, MaskSource]  # anatomy and localised findings, when known
    ctr: float | None


def read_mask(source: MaskSource) -> np.ndarray:
    """The mask as a boolean array at the image's own size."""
    if isinstance(source, dict):
        from pycocotools import mask as coco_mask

        return coco_mask.decode(source).astype(bool)
    return np.asarray(Image.open(source)) > 0


def load_cases(root: Path, layout: str) -> list[Case]:
    root = Path(root)
    if layout == "chexlocalize":
        return load_chexlocalize(root)
    truth_file = root / "ground_truth.json"
    if truth_file.is_file():
        cases = []
        for record in json.loads(truth_file.read_text()):
            image = record["files"].get("png") or record["files"]["dicom"]
            labels = np.array([record["labels"][name] for name in FINDINGS], dtype=np.float64)
            masks: dict[str, MaskSource] = {name: root / path for name, path in record["masks"].items()}
            cases.append(Case(root / image, labels, masks, record.get("ctr")))
        return cases
    split = "valid" if (root / "valid.csv").is_file() or layout == "mimic" else "train"
    samples = load_samples(root, layout, split, "ignore")
    cases = []
    for sample in samples:
        anatomy: dict[str, MaskSource] = dict(zip(ANATOMY, sample.masks, strict=True)) if sample.masks else {}
        cases.append(Case(sample.image, np.array(sample.labels, dtype=np.float64), anatomy, None))
    return cases


def load_chexlocalize(root: Path) -> list[Case]:
    """Cases from `root/gt_segmentations_*.json` and the images under `root` (any depth)."""
    found = sorted(root.glob("gt_segmentations_*.json"))
    if len(found) != 1:
        raise CXRXAIError(
            f"{root}: expected one gt_segmentations_<split>.json (CheXlocalize layout), found {len(found)}"
        )
    segmentations = json.loads(found[0].read_text())
    images = {_image_id(path): path for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES}
    cases = []
    for image_id, tasks in sorted(segmentations.items()):
        if image_id not in images:
            raise CXRXAIError(
                f"{found[0]}: no image for {image_id} under {root} (expected .../{_relative(image_id)}.*)"
            )
        labels = np.full(len(FINDINGS), np.nan)
        masks: dict[str, MaskSource] = {}
        for task, rle in tasks.items():
            name = CHEXLOCALIZE_NAMES.get(task, task)
            if name not in FINDINGS:
                raise CXRXAIError(f"{found[0]}: {image_id}: unknown pathology {task!r}")
            present = _rle_has_foreground(rle)
            labels[FINDINGS.index(name)] = float(present)
            if present:
                masks[name] = rle
        cases.append(Case(images[image_id], labels, masks, None))
    if not cases:
        raise CXRXAIError(f"{found[0]}: no images")
    return cases


def _image_id(path: Path) -> str:
    """CheXlocalize's id of `.../patient64541/study1/view1_frontal.jpg`: patient64541_study1_view1_frontal."""
    return "_".join([*path.parts[-3:-1], path.stem])


def _relative(image_id: str) -> str:
    patient, study, view = image_id.split("_", 2)
    return f"{patient}/{study}/{view}"


def _rle_has_foreground(rle: dict[str, Any]) -> bool:
    from pycocotools import mask as coco_mask

    return int(coco_mask.area(rle)) > 0
