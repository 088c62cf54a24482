"""Training data from the CheXpert and MIMIC-CXR-JPG layouts (and our phantom sets, which use CheXpert's).

CheXpert: `train.csv` / `valid.csv` with `Path` relative to the data root (the real set prefixes it with
`CheXpert-v1.0[-small]/`, which we strip when the root already is that folder) and the 14 label columns
coded 1.0 / 0.0 / -1.0 (uncertain) / blank (not mentioned = negative).
MIMIC-CXR-JPG: `mimic-cxr-2.0.0-chexpert.csv` (subject_id, study_id, 14 labels), `-split.csv`
(dicom_id, study_id, subject_id, split) and `-metadata.csv` (dicom_id, ..., ViewPosition); images at
`files/p<first 2 digits of subject>/p<subject>/s<study>/<dicom_id>.jpg`; frontal (PA / AP) views only.
Masks are optional per sample: `masks/<patient or dicom id>/<right_lung|left_lung|heart>.png`, and for
training with finding masks (`--finding-mask-weight`) `<finding>.png` beside them (e.g. `fracture.png`, as
`cxrxai phantoms` writes them) where a finding is present and localised.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrxai.errors import CXRXAIError
from cxrxai.labels import ANATOMY, FINDINGS, slug

UNCERTAIN_POLICIES = ("ignore", "ones", "zeros")
ANATOMY_FILES = tuple(slug(name) for name in ANATOMY)
MIMIC_LABELS = "mimic-cxr-2.0.0-chexpert.csv"
MIMIC_SPLIT = "mimic-cxr-2.0.0-split.csv"
MIMIC_METADATA = "mimic-cxr-2.0.0-metadata.csv"


@dataclass(frozen=True)
class Sample:
    image: Path
    labels: tuple[float, ...]  # 1 / 0, or NaN where the label is to be ignored
    masks: tuple[Path, ...] | None  # right lung, left lung, heart, or None
    mask_folder: Path | None = None  # where this sample's masks live, if it has a masks folder


def label_value(text: str, policy: str) -> float:
    """CheXpert coding to a training target under an uncertain-label policy (Irvin et al. 2019)."""
    text = (text or "").strip()
    if text == "":
        return 0.0
    value = float(text)
    if value == -1.0:
        return {"ignore": math.nan, "ones": 1.0, "zeros": 0.0}[policy]
    if value not in (0.0, 1.0):
        raise CXRXAIError(f"label value {text!r} is not one of 1.0, 0.0, -1.0 or blank")
    return value


def _masks_for(root: Path, key: str) -> tuple[tuple[Path, ...] | None, Path | None]:
    """(anatomy mask paths if all exist, the sample's masks folder if it exists)."""
    folder = root / "masks" / key
    paths = tuple(folder / f"{name}.png" for name in ANATOMY_FILES)
    return (paths if all(p.is_file() for p in paths) else None), (folder if folder.is_dir() else None)


def chexpert_samples(root: Path, csv_name: str, policy: str) -> list[Sample]:
    table = root / csv_name
    if not table.is_file():
        raise CXRXAIError(f"{table} not found: a CheXpert-layout folder has train.csv / valid.csv")
    samples = []
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("Path", *FINDINGS) if c not in (reader.fieldnames or [])]
        if missing:
            raise CXRXAIError(f"{table}: missing CheXpert columns {', '.join(missing)}")
        for row in reader:
            if row.get("Frontal/Lateral", "Frontal") != "Frontal":
                continue
            relative = Path(row["Path"])
            if (
                relative.parts
                and relative.parts[0].startswith("CheXpert-v1.0")
                and not (root / relative).exists()
            ):
                relative = Path(*relative.parts[1:])
            patient = next((part for part in relative.parts if part.startswith("patient")), relative.stem)
            samples.append(
                Sample(
                    root / relative,
                    tuple(label_value(row[f], policy) for f in FINDINGS),
                    *_masks_for(root, patient),
                )
            )
    return samples


def mimic_samples(root: Path, split: str, policy: str) -> list[Sample]:
    for name in (MIMIC_LABELS, MIMIC_SPLIT, MIMIC_METADATA):
        if not (root / name).is_file():
            raise CXRXAIError(f"{root / name} not found: the MIMIC-CXR-JPG layout needs {name}")
    with open(root / MIMIC_LABELS, newline="") as handle:
        labels = {(r["subject_id"], r["study_id"]): r for r in csv.DictReader(handle)}
    with open(root / MIMIC_METADATA, newline="") as handle:
        views = {r["dicom_id"]: r.get("ViewPosition", "") for r in csv.DictReader(handle)}
    samples = []
    with open(root / MIMIC_SPLIT, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["split"] != split or views.get(row["dicom_id"]) not in ("PA", "AP"):
                continue
            record = labels.get((row["subject_id"], row["study_id"]))
            if record is None:
                continue
            subject = row["subject_id"]
            image = (
                root
                / "files"
                / f"p{subject[:2]}"
                / f"p{subject}"
                / f"s{row['study_id']}"
                / f"{row['dicom_id']}.jpg"
            )
            samples.append(
                Sample(
                    image,
                    tuple(label_value(record[f], policy) for f in FINDINGS),
                    *_masks_for(root, row["dicom_id"]),
                )
            )
    return samples


def load_samples(root: str | Path, layout: str, split: str, policy: str) -> list[Sample]:
    """Samples of one split ('train' or 'valid'/'validate') of a data folder in the given layout."""
    if policy not in UNCERTAIN_POLICIES:
        raise CXRXAIError(f"uncertain-label policy {policy!r}: choose from {', '.join(UNCERTAIN_POLICIES)}")
    root = Path(root)
    if layout == "chexpert":
        return chexpert_samples(root, f"{'train' if split == 'train' else 'valid'}.csv", policy)
    if layout == "mimic":
        return mimic_samples(root, "train" if split == "train" else "validate", policy)
    raise CXRXAIError(f"layout {layout!r}: choose chexpert or mimic")


def positive_weights(samples: list[Sample]) -> np.ndarray:
    """Class balancing: negatives / positives per finding (ignored labels excluded), capped at 20."""
    labels = np.array([s.labels for s in samples], dtype=np.float64)
    positives = np.nansum(labels == 1.0, axis=0)
    negatives = np.nansum(labels == 0.0, axis=0)
    weights = np.where(positives > 0, negatives / np.maximum(positives, 1.0), 1.0)  # none: nothing to weight
    return np.clip(weights, 1.0, 20.0).astype(np.float32)
