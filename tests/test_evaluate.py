"""`cxrxai evaluate` on a tiny phantom set: every section of the report is filled and sane."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cxrxai.cli import main
from cxrxai.evaluate import bootstrap_interval, dice, expected_calibration_error
from cxrxai.labels import FINDINGS


def _phantom_set(tmp_path, count: int, seed: int):
    """A small phantom set at 96 px and the report folder to evaluate it into."""
    data = tmp_path / "set"
    command = ["phantoms", "--count", str(count), "--out", str(data), "--size", "96", "--workers", "1"]
    assert main([*command, "--seed", str(seed)]) == 0
    return data, tmp_path / "report"


def test_metric_helpers():
    assert dice(np.ones((3, 3), bool), np.ones((3, 3), bool)) == 1.0
    assert dice(np.eye(3, dtype=bool), ~np.eye(3, dtype=bool)) == 0.0
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([0.0, 0.0])) == pytest.approx(0.9)
    low, high = bootstrap_interval(np.arange(100.0), np.mean, np.random.default_rng(0))
    assert low < 49.5 < high and high - low < 20


def test_evaluate_report(tiny_bundle, tmp_path, capsys):
    data, out = _phantom_set(tmp_path, count=12, seed=8)
    assert main(["evaluate", "--data", str(data), "--bundle", str(tiny_bundle), "--out", str(out),
                 "--methods", "gradcam", "crm"]) == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 12
    assert set(report["findings"]) >= {"No Finding", "Cardiomegaly"}
    for entry in report["findings"].values():
        if "auroc" in entry:
            assert 0 <= entry["auroc"] <= 1 and entry["auroc_ci95"][0] <= entry["auroc_ci95"][1]
    for stage in ("anatomy", "anatomy_before_post_processing"):
        for name in ("dice_lungs", "dice_heart"):
            assert 0 <= report[stage][name]["mean"] <= 1
    # an untrained model can be off by more than 1; after post-processing its noise may leave no heart
    assert report["anatomy_before_post_processing"]["ctr_abs_error"]["mean"] >= 0
    assert report["anatomy"].get("ctr_abs_error", {"mean": 0})["mean"] >= 0
    assert "before post-processing" in (out / "report.md").read_text()
    assert any(key.startswith("gradcam/") for key in report["localisation"])
    assert any(key.startswith("gradcam+lungmask/") for key in report["localisation"])  # side by side
    for metrics in report["localisation"].values():
        for metric in ("pointing_game", "iou_otsu", "energy_in_mask"):
            assert 0 <= metrics[metric]["mean"] <= 1
    assert "| Cardiomegaly |" in (out / "report.md").read_text()
    for finding, entries in report["localisation_by_finding"].items():  # the layer-wise question per finding
        assert finding in FINDINGS and all(0 <= m["pointing_game"]["mean"] <= 1 for m in entries.values())
    assert sum(
        m["pointing_game"]["n"] for e in report["localisation_by_finding"].values() for m in e.values()
    ) == sum(m["pointing_game"]["n"] for m in report["localisation"].values())
    assert "localises each finding best" in (out / "report.md").read_text()
    assert (out / "figures" / "roc.png").stat().st_size > 5000
    assert (out / "figures" / "heatmaps.png").stat().st_size > 5000
    assert "mean AUROC" in capsys.readouterr().out


def test_deletion_insertion_endpoints(explainer):
    """With one step each curve has just its end points: both areas are (p(image) + p(blurred)) / 2."""
    import torch
    from scipy import ndimage

    from cxrxai.evaluate import deletion_insertion

    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    saliency = np.random.default_rng(0).random((16, 16))
    deletion, insertion = deletion_insertion(explainer, x, 2, saliency, steps=1)
    blurred = torch.as_tensor(ndimage.gaussian_filter(x[0, 0].numpy(), sigma=2.0))[None, None]
    with torch.no_grad():
        p_image = float(torch.sigmoid(explainer.network(x)[0][0, 2]))
        p_blur = float(torch.sigmoid(explainer.network(blurred)[0][0, 2]))
    assert deletion == pytest.approx((p_image + p_blur) / 2, abs=1e-6)
    assert insertion == pytest.approx(deletion, abs=1e-6)
    many = deletion_insertion(explainer, x, 2, saliency, steps=10)
    assert all(0.0 <= value <= 1.0 for value in many)


def test_evaluate_faithfulness_columns(tiny_bundle, tmp_path):
    data, out = _phantom_set(tmp_path, count=4, seed=5)
    args = [
        "evaluate",
        "--data",
        str(data),
        "--bundle",
        str(tiny_bundle),
        "--out",
        str(out),
        "--methods",
        "gradcam",
    ]
    assert main([*args, "--faithfulness"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["localisation"]  # seed 5: the first four phantoms carry localised findings
    for metrics in report["localisation"].values():
        assert 0 <= metrics["deletion_auc"]["mean"] <= 1 and 0 <= metrics["insertion_auc"]["mean"] <= 1
    assert "deletion AUC (lower better)" in (out / "report.md").read_text()


def test_tuned_iou_is_cross_fitted():
    """Each fold is scored at the threshold the other fold prefers, never at its own best."""
    from cxrxai.evaluate import TUNING_THRESHOLDS, cross_fitted_tuned_iou

    low, high = [0.9] + [0.1] * (len(TUNING_THRESHOLDS) - 1), [0.1] * (len(TUNING_THRESHOLDS) - 1) + [0.8]
    # fold 0 likes the lowest threshold, fold 1 the highest: each gets the other's choice
    assert cross_fitted_tuned_iou([("Edema", 0, low), ("Edema", 1, high)]) == [0.1, 0.1]
    # agreeing folds get their shared best; a finding seen in one fold only falls back to 0.5
    assert cross_fitted_tuned_iou([("Edema", 0, low), ("Edema", 1, low)]) == [0.9, 0.9]
    middle = list(TUNING_THRESHOLDS).index(0.5)
    ramp = [float(i) / 10 for i in range(len(TUNING_THRESHOLDS))]
    assert cross_fitted_tuned_iou([("Fracture", 1, ramp)]) == [ramp[middle]]


def test_pointing_tolerance_band():
    from cxrxai.evaluate import _within

    mask = np.zeros((20, 20), bool)
    mask[10, 10] = True
    near = _within(mask, 3)
    assert near[10, 13] and near[7, 10] and not near[10, 14] and not near[0, 0]
    assert not _within(np.zeros((4, 4), bool), 3).any()


def test_evaluate_chexlocalize_layout(tiny_bundle, tmp_path):
    """A CheXlocalize-style set (COCO RLE masks by image id and pathology, CheXpert-layout images)
    made from phantoms: labels follow the masks, Airspace Opacity maps to Lung Opacity, and the
    localisation metrics are computed against the decoded masks."""
    from pycocotools import mask as coco_mask

    from cxrxai.datasets.evaluation import load_cases

    phantoms, out = _phantom_set(tmp_path, count=6, seed=5)
    truth = json.loads((phantoms / "ground_truth.json").read_text())
    real = tmp_path / "chexlocalize"
    segmentations = {}
    tasks = ["Cardiomegaly", "Airspace Opacity", "Pleural Effusion", "Support Devices"]
    for index, record in enumerate(truth):
        image_id = f"patient{64541 + index}_study1_view1_frontal"
        target = real / "CheXpert-v1.0" / "valid" / f"patient{64541 + index}" / "study1" / "view1_frontal.png"
        target.parent.mkdir(parents=True)
        target.write_bytes((phantoms / record["files"]["png"]).read_bytes())
        shape = np.asarray(Image.open(target)).shape
        entry = {}
        for task in tasks:
            name = "Lung Opacity" if task == "Airspace Opacity" else task
            mask = np.zeros(shape, np.uint8)
            if record["labels"][name] == 1:
                mask = (np.asarray(Image.open(phantoms / record["masks"][name])) > 0).astype(np.uint8)
            rle = coco_mask.encode(np.asfortranarray(mask))
            entry[task] = {"size": rle["size"], "counts": rle["counts"].decode()}
        segmentations[image_id] = entry
    (real / "gt_segmentations_val.json").write_text(json.dumps(segmentations))

    cases = load_cases(real, "chexlocalize")
    assert len(cases) == 6
    for case, record in zip(cases, truth, strict=True):
        for name in ("Cardiomegaly", "Lung Opacity", "Pleural Effusion", "Support Devices"):
            assert case.labels[FINDINGS.index(name)] == record["labels"][name]
        assert np.isnan(case.labels[FINDINGS.index("Fracture")])  # not one of CheXlocalize's tasks
    assert main(["evaluate", "--data", str(real), "--bundle", str(tiny_bundle), "--out", str(out),
                 "--layout", "chexlocalize", "--methods", "gradcam"]) == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 6 and report["localisation"]
    for metrics in report["localisation"].values():
        for metric in ("pointing_game", "pointing_game_tolerant", "iou_otsu", "iou_tuned"):
            assert 0 <= metrics[metric]["mean"] <= 1
        assert metrics["pointing_game_tolerant"]["mean"] >= metrics["pointing_game"]["mean"]


def test_chexlocalize_missing_image_is_one_readable_error(tmp_path, capsys):
    (tmp_path / "gt_segmentations_test.json").write_text(
        json.dumps({"patient1_study1_view1_frontal": {"Edema": {"size": [4, 4], "counts": "04"}}})
    )
    assert main(["evaluate", "--data", str(tmp_path), "--bundle", str(tmp_path), "--out", str(tmp_path / "r"),
                 "--layout", "chexlocalize"]) != 0  # fmt: skip
    assert "patient1/study1/view1_frontal" in capsys.readouterr().err
