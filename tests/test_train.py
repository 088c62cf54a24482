"""Training data layouts (CheXpert, MIMIC-CXR-JPG), label policies, thresholds, and a tiny end-to-end run."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from cxrxai.cli import main
from cxrxai.errors import CXRXAIError
from cxrxai.labels import FINDINGS
from cxrxai.model.bundle import load_bundle
from cxrxai.samples import chest_image
from cxrxai.train.data import label_value, load_samples, positive_weights
from cxrxai.train.trainer import tune_thresholds


def test_label_coding_and_policies():
    assert label_value("1.0", "ignore") == 1.0 and label_value("0.0", "ones") == 0.0
    assert label_value("", "zeros") == 0.0  # not mentioned = negative
    assert math.isnan(label_value("-1.0", "ignore"))
    assert label_value("-1.0", "ones") == 1.0 and label_value("-1.0", "zeros") == 0.0
    with pytest.raises(CXRXAIError, match="not one of"):
        label_value("2", "ones")


def _chexpert_folder(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    rows = []
    for i, view in enumerate(["Frontal", "Frontal", "Lateral"]):
        relative = f"train/patient{i:05d}/study1/view1_{view.lower()}.jpg"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((chest_image(40, 32, seed=i) * 255).astype(np.uint8)).save(root / relative)
        labels = {name: "" for name in FINDINGS}
        labels["Cardiomegaly"] = ["1.0", "-1.0", "0.0"][i]
        rows.append(
            {
                "Path": f"CheXpert-v1.0-small/{relative}",
                "Sex": "Male",
                "Age": "50",
                "Frontal/Lateral": view,
                "AP/PA": "PA" if view == "Frontal" else "",
                **labels,
            }
        )
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_chexpert_layout(tmp_path):
    root = _chexpert_folder(tmp_path)
    samples = load_samples(root, "chexpert", "train", "ignore")
    assert len(samples) == 2  # the lateral view is skipped
    assert all(s.image.is_file() for s in samples)  # the CheXpert-v1.0-small/ prefix is resolved
    cardio = FINDINGS.index("Cardiomegaly")
    assert samples[0].labels[cardio] == 1.0 and math.isnan(samples[1].labels[cardio])
    assert samples[0].masks is None
    with pytest.raises(CXRXAIError, match="valid.csv"):
        load_samples(root, "chexpert", "valid", "ignore")


def test_mimic_layout(tmp_path):
    root = tmp_path / "mimic"
    records = [
        ("10000032", "50414267", "02aa804e-bde0afdd", "PA", "train"),
        ("10000032", "50414267", "174413ec-4ec4c1f7", "LATERAL", "train"),
        ("10000764", "57375967", "096052b7-d256dc40", "AP", "validate"),
    ]
    with open(
        root.joinpath("mimic-cxr-2.0.0-chexpert.csv") if root.mkdir() is None else None, "w", newline=""
    ) as h:
        writer = csv.writer(h)
        writer.writerow(["subject_id", "study_id", *FINDINGS])
        writer.writerow(["10000032", "50414267", *["1.0" if f == "Edema" else "" for f in FINDINGS]])
        writer.writerow(["10000764", "57375967", *["-1.0" if f == "Pneumonia" else "0.0" for f in FINDINGS]])
    with open(root / "mimic-cxr-2.0.0-split.csv", "w", newline="") as h:
        writer = csv.writer(h)
        writer.writerow(["dicom_id", "study_id", "subject_id", "split"])
        for subject, study, dicom, _, split in records:
            writer.writerow([dicom, study, subject, split])
    with open(root / "mimic-cxr-2.0.0-metadata.csv", "w", newline="") as h:
        writer = csv.writer(h)
        writer.writerow(
            [
                "dicom_id",
                "subject_id",
                "study_id",
                "PerformedProcedureStepDescription",
                "ViewPosition",
                "Rows",
                "Columns",
            ]
        )
        for subject, study, dicom, view, _ in records:
            writer.writerow([dicom, subject, study, "CHEST (PA AND LAT)", view, 40, 32])
    for subject, study, dicom, _, _ in records:
        path = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((chest_image(40, 32) * 255).astype(np.uint8)).save(path)
    train = load_samples(root, "mimic", "train", "zeros")
    assert [s.image.stem for s in train] == ["02aa804e-bde0afdd"]  # frontal only
    assert train[0].labels[FINDINGS.index("Edema")] == 1.0
    valid = load_samples(root, "mimic", "valid", "ones")
    assert len(valid) == 1 and valid[0].labels[FINDINGS.index("Pneumonia")] == 1.0
    (root / "mimic-cxr-2.0.0-split.csv").unlink()
    with pytest.raises(CXRXAIError, match="needs mimic-cxr-2.0.0-split.csv"):
        load_samples(root, "mimic", "train", "zeros")


def test_positive_weights_balance_classes(tmp_path):
    from cxrxai.train.data import Sample

    samples = [Sample(tmp_path, tuple([1.0] + [0.0] * 13), None)] + [
        Sample(tmp_path, tuple([0.0] * 14), None)
    ] * 3
    weights = positive_weights(samples)
    assert weights[0] == pytest.approx(3.0) and weights[1] == pytest.approx(1.0)  # no positives: no boost


def test_thresholds_separate_when_they_can():
    probabilities = np.tile(np.array([[0.1], [0.2], [0.7], [0.9]]), (1, 14))
    labels = np.tile(np.array([[0.0], [0.0], [1.0], [1.0]]), (1, 14))
    labels[:, 1] = 0.0  # no positives: default threshold
    thresholds = tune_thresholds(probabilities, labels)
    assert thresholds[FINDINGS[0]] == pytest.approx(0.7) and thresholds[FINDINGS[1]] == 0.5


def test_tiny_training_run_is_reproducible_and_resumable(tmp_path):
    data = tmp_path / "phantoms"
    assert (
        main(
            ["phantoms", "--count", "16", "--out", str(data), "--size", "96", "--workers", "1", "--seed", "4"]
        )
        == 0
    )
    args = [
        "train",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--input-size",
        "32",
        "--channels",
        "4",
        "8",
        "16",
        "--seed",
        "1",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    first, second = load_bundle(tmp_path / "a"), load_bundle(tmp_path / "b")
    assert first.spec.trained and first.content_hash == second.content_hash  # same seed, same model
    assert (tmp_path / "a" / "checkpoints" / "last.pt").is_file()
    resumed = [*args[:4], "2", *args[5:], "--out", str(tmp_path / "a"), "--resume"]
    assert main(resumed) == 0
    metadata = json.loads((tmp_path / "a" / "configs" / "metadata.json").read_text())
    assert "2 epochs" in metadata["description"]
    assert load_bundle(tmp_path / "a").content_hash != first.content_hash


def test_full_resolution_first_level(tmp_path, capsys):
    """`--strides 1 2`: the first encoder level keeps the input grid (thin lines and rib cortices reach a
    non-linearity before any down-sampling); the bundle records the strides and inference rebuilds them."""
    data = tmp_path / "phantoms"
    assert main(["phantoms", "--count", "8", "--out", str(data), "--size", "96", "--workers", "1"]) == 0
    args = ["train", "--data", str(data), "--epochs", "1", "--batch-size", "4", "--input-size", "32"]
    args += ["--channels", "4", "8", "16"]
    assert main([*args, "--strides", "1", "2", "--out", str(tmp_path / "full")]) == 0
    bundle = load_bundle(tmp_path / "full")
    assert bundle.spec.network.strides == (1, 2)
    import torch

    with torch.no_grad():
        skips, bottleneck = bundle.network.encode(torch.zeros(1, 1, 32, 32))
    assert skips[0].shape[-1] == 32 and bottleneck.shape[-1] == 16
    capsys.readouterr()
    assert main([*args, "--strides", "3", "2", "--out", str(tmp_path / "bad")]) == 2
    assert "--strides needs 2 values of 1 or 2" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
