"""`cxrxai evaluate` on a tiny phantom set: every section of the report is filled and sane."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrxai.cli import main
from cxrxai.evaluate import bootstrap_interval, dice, expected_calibration_error


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
    for name in ("dice_lungs", "dice_heart"):
        assert 0 <= report["anatomy"][name]["mean"] <= 1
    assert report["anatomy"]["ctr_abs_error"]["mean"] >= 0  # an untrained model can be off by more than 1
    assert any(key.startswith("gradcam/") for key in report["localisation"])
    assert any(key.startswith("gradcam+lungmask/") for key in report["localisation"])  # side by side
    for metrics in report["localisation"].values():
        for metric in ("pointing_game", "iou_otsu", "energy_in_mask"):
            assert 0 <= metrics[metric]["mean"] <= 1
    assert "| Cardiomegaly |" in (out / "report.md").read_text()
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
