"""`cxrxai evaluate`: how well a bundle classifies, segments and localises, with bootstrap intervals.

Classification: per-finding AUROC with a 95 % bootstrap interval, mean AUROC, expected calibration error.
Anatomy: Dice of lungs and heart, cardiothoracic-ratio error. Localisation, per method and layer (the
layer-wise question: which depth localises each finding best), on images where the finding is present
and has a ground-truth mask: pointing game (hit if the map's maximum falls in the mask), IoU of the map
thresholded with Otsu's method and with per-finding tuned thresholds (as CheXlocalize does: the
threshold from 0.2-0.7 that maximises mIoU for that finding; tuned on one half of the images and
scored on the other, both ways round, so no image scores with a threshold tuned on itself), the
pointing game with Zhang et al.'s 15-pixel tolerance (at a 224-pixel width; scaled to the image), the
share of map energy inside the mask, and (opt-in, `--faithfulness`) deletion / insertion AUC;
lung-masked maps (`+lungmask`) side by side with unmasked ones. Every metric has a 95 % bootstrap
interval. The sets (phantoms, CheXpert / MIMIC layouts, CheXlocalize-style real radiographs with
pixel masks) are read by `cxrxai.datasets.evaluation`.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from skimage.filters import threshold_otsu
from sklearn.metrics import roc_auc_score

from cxrxai.cardiothoracic import cardiothoracic_ratio
from cxrxai.datasets.evaluation import load_cases, read_mask
from cxrxai.errors import CXRXAIError
from cxrxai.explain import DEFAULT_METHODS
from cxrxai.explain.engine import Explainer
from cxrxai.io import read_radiograph
from cxrxai.labels import ANATOMY, FINDINGS, slug
from cxrxai.model.preprocess import prepare

BOOTSTRAP = 1000
TUNING_THRESHOLDS = np.round(np.arange(0.2, 0.75, 0.1), 2)  # CheXlocalize's grid on [0, 1] maps
POINTING_TOLERANCE = 15 / 224  # Zhang et al. 2016: 15 pixels at the 224-pixel input width


def bootstrap_interval(values: np.ndarray, statistic, rng: np.random.Generator) -> tuple[float, float]:
    estimates = []
    n = len(values)
    with warnings.catch_warnings():  # scikit-learn warns (and returns NaN) on one-class resamples
        warnings.simplefilter("ignore")
        for _ in range(BOOTSTRAP):
            sample = values[rng.integers(0, n, n)]
            try:
                estimate = float(statistic(sample))
            except ValueError:  # older scikit-learn raises on a resample with one class only
                continue
            if np.isfinite(estimate):
                estimates.append(estimate)
    if not estimates:
        return (float("nan"), float("nan"))
    return float(np.percentile(estimates, 2.5)), float(np.percentile(estimates, 97.5))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    error = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        chosen = (probabilities >= lo) & ((probabilities < hi) | (hi == 1.0))
        if chosen.any():
            error += chosen.mean() * abs(probabilities[chosen].mean() - labels[chosen].mean())
    return float(error)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def deletion_insertion(
    explainer: Explainer, x, finding: int, saliency: np.ndarray, steps: int = 10
) -> tuple[float, float]:
    """Deletion and insertion AUC (Petsiuk et al. 2018) of one map on the working grid.

    Deletion replaces the most salient pixels first with a blurred copy of the image and follows the
    finding's probability (lower area = more faithful map); insertion starts from the blurred copy and
    restores the most salient pixels first (higher area = more faithful). Both curves have steps + 1
    points, evaluated in one batched forward pass.
    """
    import torch
    import torch.nn.functional as F
    from scipy import ndimage

    size = x.shape[-1]
    image = x[0, 0].cpu().numpy()
    blurred = ndimage.gaussian_filter(image, sigma=size / 16)
    grid = F.interpolate(
        torch.as_tensor(saliency, dtype=torch.float32)[None, None], size=(size, size), mode="bilinear"
    )
    order = np.argsort(-grid[0, 0].numpy().ravel(), kind="stable")
    fractions = np.linspace(0, 1, steps + 1)
    deleted, inserted = [], []
    for fraction in fractions:
        chosen = order[: int(round(fraction * order.size))]
        removed = image.copy().ravel()
        removed[chosen] = blurred.ravel()[chosen]
        restored = blurred.copy().ravel()
        restored[chosen] = image.ravel()[chosen]
        deleted.append(removed.reshape(size, size))
        inserted.append(restored.reshape(size, size))
    batch = torch.as_tensor(
        np.stack(deleted + inserted)[:, None], dtype=torch.float32, device=explainer.device
    )
    with torch.no_grad():
        probabilities = torch.sigmoid(explainer.network(batch)[0][:, finding]).cpu().numpy()
    curve_deletion, curve_insertion = probabilities[: steps + 1], probabilities[steps + 1 :]
    return float(np.trapezoid(curve_deletion, fractions)), float(np.trapezoid(curve_insertion, fractions))


def evaluate(
    data: Path,
    bundle: Path,
    out: Path,
    layout: str = "chexpert",
    methods=DEFAULT_METHODS,
    seed: int = 0,
    faithfulness: bool = False,
) -> dict:
    cases = load_cases(Path(data), layout)
    if not cases:
        raise CXRXAIError(f"{data}: no evaluation images")
    explainer = Explainer.from_bundle(bundle)
    rng = np.random.default_rng(seed)
    probabilities = []
    # after post-processing (what every result uses) and before it (the thresholded probabilities)
    stages = ("after", "before")
    segmentation: dict[str, dict[str, list[float]]] = {stage: defaultdict(list) for stage in stages}
    ctr_errors: dict[str, list[float]] = {stage: [] for stage in stages}
    localisation: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    tuning: dict[str, list[tuple[str, int, list[float]]]] = defaultdict(list)
    scored_findings: dict[str, list[str]] = defaultdict(list)  # the finding of each localisation record
    example = None  # the first case with a localised finding, for the heat-map figure
    for case in cases:
        radiograph = read_radiograph(case.image)
        localised = [f for j, f in enumerate(FINDINGS) if case.labels[j] == 1 and f in case.masks]
        explanation = explainer.explain(
            radiograph,
            findings=localised or ["No Finding"],
            methods=methods if localised else (),
            lung_mask=bool(localised),
        )
        probabilities.append([f.probability for f in explanation.findings])
        if all(name in case.masks for name in ANATOMY):
            truth = [read_mask(case.masks[name]) for name in ANATOMY]
            true_ctr = (
                case.ctr if case.ctr is not None else cardiothoracic_ratio(truth[2], truth[0] | truth[1])
            )
            raw = explanation.thresholded_masks
            ctrs = {"after": explanation.ctr, "before": cardiothoracic_ratio(raw[2], raw[0] | raw[1])}
            for stage, processed in (("after", True), ("before", False)):
                predicted = explanation.anatomy_at_source(processed=processed)
                segmentation[stage]["Lungs"].append(dice(predicted[0] | predicted[1], truth[0] | truth[1]))
                for k, name in enumerate(ANATOMY):
                    segmentation[stage][name].append(dice(predicted[k], truth[k]))
                predicted_ctr = ctrs[stage]
                if true_ctr is not None and predicted_ctr is not None:
                    ctr_errors[stage].append(abs(predicted_ctr - true_ctr))
        if localised and example is None:
            example = (
                radiograph.pixels,
                explanation,
                localised[0],
                read_mask(case.masks[localised[0]]),
            )
        working = prepare(radiograph.pixels, explainer.bundle.spec.preprocessing)[0] if faithfulness else None
        for finding in localised:
            mask = read_mask(case.masks[finding])
            near_mask = _within(mask, POINTING_TOLERANCE * mask.shape[1])
            for key, heatmap in explanation.heatmaps.items():
                if heatmap.target != finding:
                    continue
                values = explanation.map_at_source(key)
                method_layer = f"{heatmap.method}/{heatmap.layer}"
                scores = localisation[method_layer]
                scored_findings[method_layer].append(finding)
                peak = int(np.argmax(values))
                scores["pointing_game"].append(float(mask.flat[peak]))
                scores["pointing_game_tolerant"].append(float(near_mask.flat[peak]))
                threshold = threshold_otsu(values) if np.ptp(values) > 0 else 1.0
                scores["iou_otsu"].append(_iou(values >= threshold, mask))
                tuning[method_layer].append(
                    (finding, len(probabilities) % 2, [_iou(values >= t, mask) for t in TUNING_THRESHOLDS])
                )
                total = float(values.sum())
                scores["energy_in_mask"].append(float(values[mask].sum() / total) if total > 0 else 0.0)
                if working is not None:
                    deletion, insertion = deletion_insertion(
                        explainer, working, FINDINGS.index(finding), heatmap.values
                    )
                    scores["deletion_auc"].append(deletion)
                    scores["insertion_auc"].append(insertion)
    probabilities_array = np.array(probabilities)
    labels = np.array([c.labels for c in cases])
    report: dict = {
        "images": len(cases),
        "bundle": str(bundle),
        "findings": {},
        "anatomy": {},
        "anatomy_before_post_processing": {},
        "localisation": {},
        "localisation_by_finding": {},
    }
    aurocs = []
    for j, name in enumerate(FINDINGS):
        known = ~np.isnan(labels[:, j])
        y, p = labels[known, j], probabilities_array[known, j]
        entry: dict = {"positives": int(y.sum()), "negatives": int((y == 0).sum())}
        if 0 < y.sum() < len(y):
            auroc = float(roc_auc_score(y, p))
            pairs = np.stack([y, p], 1)
            entry["auroc"] = auroc
            entry["auroc_ci95"] = bootstrap_interval(pairs, lambda s: roc_auc_score(s[:, 0], s[:, 1]), rng)
            aurocs.append(auroc)
        entry["ece"] = expected_calibration_error(p, y) if len(y) else None
        report["findings"][name] = entry
    report["mean_auroc"] = float(np.mean(aurocs)) if aurocs else None
    for stage, key in (("after", "anatomy"), ("before", "anatomy_before_post_processing")):
        for name, dice_scores in segmentation[stage].items():
            report[key][f"dice_{slug(name)}"] = _summary(np.array(dice_scores), rng)
        if ctr_errors[stage]:
            report[key]["ctr_abs_error"] = _summary(np.array(ctr_errors[stage]), rng)
    for method_layer, records in tuning.items():
        localisation[method_layer]["iou_tuned"] = cross_fitted_tuned_iou(records)
    for method_layer, metrics in sorted(localisation.items()):
        report["localisation"][method_layer] = {
            metric: _summary(np.array(v), rng) for metric, v in metrics.items()
        }
        names = np.array(scored_findings[method_layer])
        for finding in FINDINGS:
            chosen = names == finding
            if chosen.any():
                report["localisation_by_finding"].setdefault(finding, {})[method_layer] = {
                    metric: _summary(np.array(v)[chosen], rng) for metric, v in metrics.items()
                }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    roc_figure(probabilities_array, labels, figures / "roc.png")
    if example is not None:
        heatmap_grid(*example, figures / "heatmaps.png")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown_report(report))
    return report


def roc_figure(probabilities: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """ROC curve of every finding with both classes present, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from sklearn.metrics import roc_curve

    figure, axes = plt.subplots(3, 5, figsize=(15, 9))
    for j, (name, axis) in enumerate(zip(FINDINGS, axes.ravel(), strict=False)):
        known = ~np.isnan(labels[:, j])
        y, p = labels[known, j], probabilities[known, j]
        axis.plot([0, 1], [0, 1], color="0.7", linewidth=0.8)
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, p)
            axis.plot(fpr, tpr, linewidth=1.5)
            axis.set_title(f"{name}\nAUROC {roc_auc_score(y, p):.2f}", fontsize=9)
        else:
            axis.set_title(f"{name}\n(one class only)", fontsize=9)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
    axes.ravel()[-1].axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def heatmap_grid(pixels: np.ndarray, explanation, finding: str, mask: np.ndarray, path: Path) -> None:
    """One case's maps for one finding: a row per method, a column per layer, ground truth outlined."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from cxrxai.render import layer_order

    maps = {k: h for k, h in explanation.heatmaps.items() if h.target == finding}
    methods = sorted({h.method for h in maps.values()})
    present = {h.layer for h in maps.values()}
    special = [layer for layer in ("fused", "input") if layer in present]
    layers = sorted(present - set(special), key=layer_order) + special  # encoder ... decoder, then the rest
    figure, axes = plt.subplots(
        len(methods), len(layers), figsize=(2 * len(layers), 2.2 * len(methods)), squeeze=False
    )
    for r, method in enumerate(methods):
        for c, layer in enumerate(layers):
            axis = axes[r, c]
            axis.axis("off")
            key = f"{method}/{layer}/{finding}"
            if key not in maps:
                continue
            axis.imshow(pixels, cmap="gray")
            axis.imshow(explanation.map_at_source(key), cmap="inferno", alpha=0.5, vmin=0, vmax=1)
            axis.contour(mask, levels=[0.5], colors="cyan", linewidths=0.6)
            axis.set_title(f"{method}\n{layer}", fontsize=7)
    figure.suptitle(f"{finding}: heat maps by method and layer (cyan: ground truth)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=70)
    plt.close(figure)


def _summary(values: np.ndarray, rng: np.random.Generator) -> dict:
    """Mean, 95 % bootstrap interval of the mean (all resamples drawn at once), and n."""
    resampled = values[rng.integers(0, len(values), (BOOTSTRAP, len(values)))].mean(axis=1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {"mean": float(values.mean()), "ci95": (float(low), float(high)), "n": int(len(values))}


def cross_fitted_tuned_iou(records: list[tuple[str, int, list[float]]]) -> list[float]:
    """IoU at per-finding tuned thresholds (CheXlocalize), without scoring an image on its own tuning.

    `records` hold (finding, fold 0 / 1, IoU at each of TUNING_THRESHOLDS). For each fold and finding,
    the threshold with the highest mean IoU on the other fold is applied to this fold's records; where
    the other fold has no record of that finding, the middle of the grid (0.5) is used.
    """
    scored = []
    default = int(np.argmin(np.abs(TUNING_THRESHOLDS - 0.5)))
    for finding, fold, ious in records:
        others = [r[2] for r in records if r[0] == finding and r[1] != fold]
        best = int(np.argmax(np.mean(others, axis=0))) if others else default
        scored.append(ious[best])
    return scored


def _within(mask: np.ndarray, distance: float) -> np.ndarray:
    """Pixels at most `distance` pixels from the mask (the mask itself included)."""
    from scipy import ndimage

    if not mask.any():
        return mask
    return ndimage.distance_transform_edt(~mask) <= distance


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def markdown_report(report: dict) -> str:
    lines = [f"# Evaluation of {report['bundle']}", "", f"{report['images']} images.", ""]
    lines += ["## Findings", "", "| finding | positives | AUROC | 95% CI | ECE |", "|---|---:|---:|---|---:|"]
    for name, entry in report["findings"].items():
        ci = entry.get("auroc_ci95")
        auroc = f"{entry['auroc']:.3f}" if "auroc" in entry else "n/a"
        interval = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else ""
        ece = f"{entry['ece']:.3f}" if entry.get("ece") is not None else ""
        lines.append(f"| {name} | {entry['positives']} | {auroc} | {interval} | {ece} |")
    mean = report["mean_auroc"]
    lines += ["", f"Mean AUROC: {mean:.3f}" if mean is not None else "Mean AUROC: n/a", "", "## Anatomy", ""]
    before = report.get("anatomy_before_post_processing", {})
    for name, entry in report["anatomy"].items():
        line = f"- {name}: {entry['mean']:.3f} (95% CI {entry['ci95'][0]:.3f}-{entry['ci95'][1]:.3f})"
        if name in before:
            line += f"; before post-processing {before[name]['mean']:.3f}"
        lines.append(line)
    lines += ["", "## Localisation (images where the finding is present)", ""]
    titles = {
        "pointing_game": "pointing game",
        "pointing_game_tolerant": "pointing game (15 px tolerance)",
        "iou_otsu": "IoU (Otsu)",
        "iou_tuned": "IoU (tuned thresholds)",
        "energy_in_mask": "energy in mask",
        "deletion_auc": "deletion AUC (lower better)",
        "insertion_auc": "insertion AUC (higher better)",
    }
    columns = [c for c in titles if any(c in metrics for metrics in report["localisation"].values())]
    lines += ["| method / layer | n | " + " | ".join(titles[c] for c in columns) + " |"]
    lines += ["|---|---:|" + "---:|" * len(columns)]
    for method_layer, metrics in report["localisation"].items():
        cells = [f"{metrics[c]['mean']:.3f}" for c in columns]
        lines.append(f"| {method_layer} | {metrics['pointing_game']['n']} | {' | '.join(cells)} |")
    by_finding = report.get("localisation_by_finding", {})
    if by_finding:
        lines += ["", "## Which method and layer localises each finding best", ""]
        lines += [
            "| finding | n | best pointing game | hit rate (95% CI) | with tolerance | best tuned IoU | IoU |"
        ]
        lines += ["|---|---:|---|---|---:|---|---:|"]
        for finding, entries in by_finding.items():
            top, entry = max(entries.items(), key=lambda kv: kv[1]["pointing_game"]["mean"])
            game = entry["pointing_game"]
            best_iou, iou = max(entries.items(), key=lambda kv: kv[1].get("iou_tuned", {"mean": -1})["mean"])
            iou_mean = iou.get("iou_tuned", {"mean": float("nan")})["mean"]
            lines.append(
                f"| {finding} | {game['n']} | {top} | {game['mean']:.3f} ({game['ci95'][0]:.2f}-"
                f"{game['ci95'][1]:.2f}) | {entry['pointing_game_tolerant']['mean']:.3f} | {best_iou} | "
                f"{iou_mean:.3f} |"
            )
    return "\n".join(lines) + "\n"
