"""`cxrxai evaluate` on a tiny phantom set: every section of the report is filled and sane."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrxai.cli import main
from cxrxai.evaluate import bootstrap_interval, dice, expected_calibration_error


def test_metric_helpers():
    assert dice(np.ones((3, 3), bool), np.ones((3, 3), bool)) == 1.0
    assert dice(np.eye(3, dtype=bool), ~np.eye(3, dtype=bool)) == 0.0
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([0.0, 0.0])) == pytest.approx(0.9)
    low, high = bootstrap_interval(np.arange(100.0), np.mean, np.random.default_rng(0))
    assert low < 49.5 < high and high - low < 20


def test_evaluate_report(tiny_bundle, tmp_path, capsys):
    data = tmp_path / "set"
    assert (
        main(
            ["phantoms", "--count", "12", "--out", str(data), "--size", "96", "--workers", "1", "--seed", "8"]
        )
        == 0
    )
    out = tmp_path / "report"
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
