"""`make model`: train the shipped default bundle on phantoms, evaluate it on a held-out set, and write
its model card.

Everything is seeded, so a re-run on the same machine gives the same weights (and the same content
hash; across CPU types float rounding may differ in the last bits). Training phantoms (seed 2026) and
held-out phantoms (seed 2027) never overlap. The bundle is copied to `resources/bundles/default`
without its training checkpoints; the card (`docs/README.md` in the bundle) carries the evaluation
numbers and how long each step took on this machine. The docs are not part of the content hash, so
writing the card after training does not change the bundle's identity.

The recipe is sized for 2 CPU cores: 128 px input (the explanation maps are computed on that grid and
placed on the source image), 4,000 training images rendered at 256 rows.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cxrxai.cli import DEFAULT_BUNDLE, network_from_options
from cxrxai.train import FINDING_MAPS


@dataclass(frozen=True)
class Recipe:
    train_count: int = 4000
    # 1000 held-out images, not 300: with 300 a rare finding has 14-19 positives, and the same model's
    # Fracture pointing game read 0.74 on seed 2027's 300 and 0.57 on another seed's, but 0.55 on seed
    # 2027's 1000 (67 fractures, 95% CI 0.43-0.67); evaluating takes 11 min instead of 4.
    heldout_count: int = 1000
    render_rows: int = 256
    # 192 px for 24 epochs scored lower on the held-out set than 128 px for 28 (mean AUROC 0.870 vs 0.890)
    # in 1.9x the training time: on 2 cores, epochs buy more than pixels. A rib break is about one pixel
    # wide at 128 px, yet more pixels alone did not help: 256 px folded by a pixel-unshuffle stem into 4
    # channels of 128 px (breaks and calluses plainly visible, same feature-map sizes, 56 epochs, 67 min)
    # scored 0.914 against 0.916, with Fracture 0.64 and Lung Lesion 0.76 as here; the stem was not kept.
    input_size: int = 128
    # Strides (1, 2, 2, 2) with channels (8, 16, 32, 64, 128) add a full-resolution level for 1.5x the
    # training time; after 4 epochs it was no better than this network (0.76 vs 0.78 mean AUROC), so the
    # default keeps the cheaper one.
    # A fourth level (8 x 8 bottleneck at 128 px) lets every pixel see the whole chest. With three levels,
    # the real PA film in resources/real got lung masks that followed the ribs' slope and the image's
    # edges, not the side, and a heart drawn on the hemidiaphragms; probes of 16 epochs on 2000 phantoms
    # (anterior ribs drawn) put 0.60 / 0.62 of each lung mask on its side with three levels and 0.88 / 0.84
    # with four, the heart between the lungs only with four. Its weights: 6.9 MB instead of 2.6 MB.
    # The full recipe with four levels, on phantoms with anterior ribs, a tilted heart, wider collimation
    # and latitude compression: 0.84 / 0.92 on the film (4 of 10 anatomy checks; the heart comes in
    # pieces), mean AUROC 0.971, lung / heart Dice 0.979 / 0.963, pointing game Lung Lesion 0.89,
    # Fracture 0.51 on 1000 held-out phantoms; 72 min of training, 15 min of evaluation.
    # The same recipe on phantoms whose heart stands on the diaphragm domes (no lung beneath it), with
    # more conspicuous rib breaks and collimation up to 0.95 of the width: 4 of 10 checks on the film
    # still (lungs 0.83 / 0.89 on their side, the heart 0.52 in one piece instead of 0.37), mean AUROC
    # 0.967, lung / heart Dice 0.980 / 0.963, pointing game Lung Lesion 0.85, Fracture 0.57; 83 min of
    # training (tests ran beside it at low priority), 12.5 min of evaluation.
    # Probes of 16 epochs on 2000 phantoms, before and after the trachea and main bronchi, hilar shadows,
    # a fainter spine (the trachea's air outweighs it) and S-shaped vendor tone scales: the heart on the
    # film in one piece 0.77 -> 1.00, 6 -> 7 of 10 checks (the lungs still come in pieces). The full
    # recipe on them: 9 of 10 checks on the film (each lung on its side 0.99 / 1.00 and in one piece 0.98 /
    # 0.99), but the heart 0.69 in one piece: its mask traced the heart's borders and left its centre out;
    # mean AUROC 0.967, lung / heart Dice 0.978 / 0.959, pointing game Lung Lesion 0.84, Fracture 0.49,
    # Support Devices 0.88 (0.96 with the 15 px tolerance); 107 min of training (a slow day), 15 of
    # evaluation. On that film the heart is grey, not white: the lower lobes' air lies behind it, and the
    # phantoms had none there (anatomy.build_anatomy draws it now). Re-trained on phantoms with that
    # retrocardiac lung: still 9 of 10 checks, the heart 0.65 in one piece (its mask now covers the left
    # ventricle but stops at the spine, which this film shows white through the heart); mean AUROC 0.963,
    # lung / heart Dice 0.978 / 0.966, CTR error 0.012 (was 0.018), pointing game Lung Lesion 0.79,
    # Fracture 0.55, Support Devices 0.89; 101 min of training, 16 of evaluation. That model was shipped
    # until the last one below. Over 16 re-framed copies of the film (anatomy_check.check_reframings) it
    # passes 6.9 checks on average and all 10 in none: the 9 of 10 is partly the film's own framing.
    # The diaphragm was then bridged straight under the heart (before, it climbed each lung's cardiac notch
    # and notched the heart over the spine in most phantoms). Re-trained on that (59 min of training on a
    # faster day): mean AUROC 0.972, lung / heart Dice 0.978 / 0.971, CTR error 0.022, pointing game Lung
    # Lesion 0.86, Fracture 0.54, Support Devices 0.90 (the held-out images are new, so not the same set);
    # but on the film 5 of 10 checks (the lungs cross the midline, the heart a band along the diaphragm in
    # pieces), 5.1 on average over the re-framed copies. One training run each: not shipped.
    # Probes of 16 epochs on 2000 phantoms, two training seeds each, mean checks over the 16 re-framed
    # copies: the straight diaphragm 6.3 and 6.7, the old one 4.3 and 5.5. So the film's checks swing by
    # more between training runs than between these generators: one full run per change cannot rank them.
    # More probes of that kind (seed 0 unless said): histogram-equalised input (MONAI HistogramNormalize,
    # which makes the input nearly independent of the tone scale) 4.2; an exponential moving average of the
    # weights (decay 0.998) 3.9; neither kept. Phantoms framed as tightly as real films are (the thorax to
    # the image's edges, lungs up to 0.82 of the height; before, the film's lungs lay at the phantoms'
    # edge and its cropped copies beyond it) 6.2 with seed 0 and 7.8 with seed 1; with metastases as half
    # the lung lesions on top (the film has several round masses, which the models drew as heart or as the
    # other lung) 5.9 and 7.6, the heart now over the cardiac shadow instead of on the domes.
    # The full recipe on those phantoms (framing and metastases; 46 min of training, 8 of evaluation on a
    # fast day): mean AUROC 0.967, lung / heart Dice 0.979 / 0.972, CTR error 0.012, pointing game Lung
    # Lesion 0.86, Fracture 0.49, Support Devices 0.91 on its held-out phantoms; on the film 8 of 10
    # checks as framed (the heart in pieces on the domes), but 9.2 on average over the 16 re-framed copies
    # and all 10 in 6 of them (the model before: 9 of 10, 6.9, none). Shipped: transfer is the re-framed
    # copies' measure, not one framing's.
    # That model fits Fracture worst (AUROC 0.87 on its own training images, 0.80 held out; Lung Lesion
    # 0.94 / 0.90), so a full run with both 2.5x as common in the phantoms (BASE_RATE 0.15 each; 42 min):
    # Fracture AUROC 0.71 and Lung Lesion 0.87 on the shipped model's held-out images (it: 0.80 / 0.90;
    # 0.77 / 0.91 on the run's own training images); on its own held-out set pointing game Fracture 0.52
    # and Lung Lesion 0.85 (189 / 170 positives); the film 8.4 checks over the re-framed copies. More
    # examples did not help; rates reverted. Where the shipped model's maps miss, they mostly peak on
    # another finding: Lung Lesion's on a co-present consolidation or pneumonia (12 of 17 misses),
    # Fracture's on pleural plaques, nodules or atelectasis, often with a confident probability.
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    # Global max pooling of decoder1 beside the average, and finding masks as a training signal through a
    # throw-away map head: 56 epochs (68 min) reach mean AUROC 0.965 on the held-out phantoms against 0.916
    # without either (Fracture 0.82 vs 0.66, Lung Lesion 0.88 vs 0.76), and Grad-CAM at decoder1 points
    # into the finding's mask 3x as often (0.67 vs 0.22). Probes: the max alone gave 0.913 at 28 epochs
    # (the average alone 0.879); the masks added 0.06 on top of it at 4 epochs.
    max_pool: bool = True
    finding_mask_weight: float = 1.0
    # The masks supervise decoder1's own Grad-CAM map (the map the node shows) rather than a throw-away head:
    # 56 epochs point Grad-CAM at decoder1 into the mask in 0.92 of all cases (0.67 with the head;
    # tuned IoU 0.61 vs 0.33), Cardiomegaly 1.00 vs 0.66, at the same mean AUROC (0.964 vs 0.965). A step
    # costs the same with either map (62 min of training on a normal day of this machine). Once the
    # phantoms drew a pneumonia's consolidation at the pneumonia's own site (before: a second, random site)
    # the pointing game rose for Pneumonia from 0.61 to 0.96 and Consolidation 0.88 to 0.95, and with
    # neighbouring rib fractures Fracture rose from 0.63 to 0.74 (mean AUROC 0.959, Lung Lesion 0.87).
    # With atelectasis beside an effusion drawn as compressive (before: at a random base), Atelectasis rose
    # from 0.84 to 0.98 and Pleural Other to 0.96, but Lung Lesion fell to 0.76. A class-balanced mask
    # loss on top (trainer.JointLoss.finding_mask_loss) did not lift the small findings measurably:
    # Lung Lesion 0.79, Fracture 0.74 both times, Atelectasis 0.96 (71 min of training; mean AUROC 0.960;
    # all these on 300 held-out images). Lung Lesion's fall was the small set's noise: on 1000 images of
    # another seed this model scores 0.85 and the one before it 0.83.
    # Rib fractures moved to the ribs' axillary arcs (before: the middle arcs, among the hilar vessels),
    # with the outer fragment stepped off and tapering back into line (before: a hard-edged block): on the
    # same 1000 held-out images (seed 2027), the model trained on them against the one before it: Fracture
    # pointing game 0.55 both (AUROC 0.80 vs 0.76), Lung Lesion 0.85 vs 0.82 (AUROC 0.91 vs 0.88),
    # Atelectasis 0.94 vs 0.97, mean AUROC 0.968 vs 0.963 (74 min of training). A fracture's break is
    # still about a pixel at 128 px; where the map misses one it mostly lands far from any finding.
    finding_mask_map: str = "gradcam"
    # A smooth pointing game on that map (trainer.JointLoss.finding_mask_loss), weight 1, in a full run
    # (49 min of training) against the shipped model, on the same 1000 held-out images: pointing game
    # Lung Lesion 0.92 (was 0.86; AUROC 0.94, was 0.90), Support Devices 0.94 (0.91), all findings 0.964
    # (0.956), but Fracture 0.46 (0.49; AUROC 0.69, was 0.79), mean AUROC 0.955 (0.967), lung / heart Dice
    # 0.977 / 0.968, CTR error 0.017; on the film 9 of 10 checks as framed but 7.6 over the re-framed
    # copies, all 10 in 2 (was 9.2, 6), its left lung speckled with right-lung pixels. Not shipped (the
    # film's transfer is the must); off by default until a run keeps both. To re-run it:
    # `make model MODEL_ARGS="--finding-pointing-weight 1"`.
    # The same with training seed 1 (118 min of training on a slow day) repeated the trade: Lung Lesion
    # 0.94 (AUROC 0.93), Support Devices 0.93, mean AUROC 0.960, the film 10 of 10 checks as framed and
    # 8.6 over the re-framed copies (all 10 in 3, the heart in one piece in 5 of 16), but Fracture 0.43
    # (AUROC 0.70) with its maps off the break: energy inside the box 0.09 (shipped 0.42), tuned IoU 0.09
    # (0.24). Both seeds lose Fracture to the term (its box is 9 px square at 128 px). Not shipped
    # (Fracture below 0.45, the bar set before the run). `finding_pointing_skip` leaves findings out of
    # the term: the same run with Fracture left out (76 min of training) kept Fracture's maps on the break
    # (pointing game 0.51, energy in its box 0.41) but not its AUROC (0.72), lifted Lung Lesion to 0.94
    # (AUROC 0.97), and lost Support Devices (AUROC 0.81, pointing game 0.45, energy 0.14; shipped 0.97,
    # 0.91, 0.71), mean AUROC 0.952, and the film: 7 of 10 checks as framed, 7.1 over the re-framed
    # copies, none with all 10, the left lung speckled across the midline. Not shipped (the film). Over
    # three runs the term buys Lung Lesion 0.92-0.94 and costs some other finding or the film each time.
    finding_pointing_weight: float = 0.0
    finding_pointing_skip: tuple[str, ...] = ()
    # 56 epochs: with the average-pooled head alone they reached 0.916 (48 min), 28 gave 0.879, and that
    # model scored about as well on its own training images as on held-out ones: under-fitted, not short of
    # data.
    epochs: int = 56
    batch_size: int = 16
    learning_rate: float = 2e-3
    train_seed: int = 2026  # the training phantoms
    heldout_seed: int = 2027  # the held-out phantoms
    # The training's own seed: initial weights, batch order, augmentation. Between two seeds the film's
    # re-framed checks moved by up to 1.6 in the probes above, so a change is judged over more than one.
    training_seed: int = 0
    version: str = "1.0.0"
    device: str = "cpu"
    # torch.compile: 1.5x faster steps on 2 CPU cores (bench/bench_train.py); needs a C++ compiler (g++)
    compile: bool = True


# The recipe fields `python -m cxrxai.train.default_model` (and so `make model MODEL_ARGS=...`) can override;
# the phantoms' seeds and the version stay fixed, so held-out and training sets never overlap.
OVERRIDABLE = (
    "train_count",
    "heldout_count",
    "render_rows",
    "input_size",
    "channels",
    "strides",
    "max_pool",
    "finding_mask_weight",
    "finding_mask_map",
    "finding_pointing_weight",
    "finding_pointing_skip",
    "training_seed",
    "epochs",
    "batch_size",
    "learning_rate",
    "device",
    "compile",
)

METHODS = ("gradcam", "hirescam", "gradcampp", "crm", "saliency")


STEPS = ("training phantoms", "train", "held-out phantoms", "evaluate")
# Real PA chest radiographs (resources/real/README.md): no masks, so the card shows the anatomy checks
REAL_RADIOGRAPHS = DEFAULT_BUNDLE.parent.parent / "real"


def build(
    work: Path, target: Path = DEFAULT_BUNDLE, recipe: Recipe = Recipe(), start: str = STEPS[0]
) -> dict:
    """Run the recipe in `work` from step `start` (earlier steps' outputs and timings are reused from
    `work`, so an interrupted evaluation does not cost another training); install the bundle in
    `target`; return the evaluation report (also written to `work/evaluation`)."""
    from cxrxai.evaluate import evaluate
    from cxrxai.model.network import NetworkConfig
    from cxrxai.phantoms.cli import generate
    from cxrxai.train.trainer import TrainConfig, train

    if start not in STEPS:
        raise ValueError(f"unknown step {start!r}; one of: {', '.join(STEPS)}")
    data, heldout, trained = work / "phantoms-train", work / "phantoms-heldout", work / "bundle"
    training = TrainConfig(  # built before any step, so a bad option stops the run before it starts
        data=data,
        layout="chexpert",
        out=trained,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        input_size=recipe.input_size,
        network=NetworkConfig(channels=recipe.channels, strides=recipe.strides, max_pool=recipe.max_pool),
        finding_mask_weight=recipe.finding_mask_weight,
        finding_mask_map=recipe.finding_mask_map,
        finding_pointing_weight=recipe.finding_pointing_weight,
        finding_pointing_skip=recipe.finding_pointing_skip,
        seed=recipe.training_seed,
        device=recipe.device,
        compile=recipe.compile,
        name="cxrxai_default",
        version=recipe.version,
    )
    work.mkdir(parents=True, exist_ok=True)
    timings_file = work / "timings.json"
    timings: dict[str, float] = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    report: dict = {}
    actions = {
        "training phantoms": lambda: generate(
            recipe.train_count, data, recipe.train_seed, {"png"}, recipe.render_rows, workers=2
        ),
        "train": lambda: train(training),
        "held-out phantoms": lambda: generate(
            recipe.heldout_count, heldout, recipe.heldout_seed, {"png"}, recipe.render_rows, workers=2
        ),
        "evaluate": lambda: report.update(evaluate(heldout, trained, work / "evaluation", methods=METHODS)),
    }
    outputs = {"training phantoms": data, "train": trained, "held-out phantoms": heldout}
    for name in STEPS[STEPS.index(start) :]:
        print(f"== {name}", file=sys.stderr, flush=True)
        if name in outputs:
            shutil.rmtree(outputs[name], ignore_errors=True)
        started = time.perf_counter()
        actions[name]()
        timings[name] = time.perf_counter() - started
        timings_file.write_text(json.dumps(timings, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(trained, target, ignore=shutil.ignore_patterns("checkpoints"))
    report["real_radiographs"], report["real_radiograph_reframings"] = real_radiograph_checks(
        target, target / "docs"
    )
    (target / "docs" / "README.md").write_text(model_card(report, recipe, timings))
    (target / "docs" / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.copy(work / "evaluation" / "report.md", target / "docs" / "evaluation.md")
    return report


# Re-framed copies of each real radiograph the card checks the masks on (anatomy_check.check_reframings)
REFRAMINGS = 16


def real_radiograph_checks(bundle: Path, figures: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """The anatomy checks (`cxrxai.anatomy_check`) of the bundle's masks on each real radiograph in
    REAL_RADIOGRAPHS, with an overlay figure each in `figures`, and how they fare over REFRAMINGS re-framed
    copies of it: the issue asks that the segmentation look right on a real PA film, no real masks are at
    hand to score it, and one framing of one film passes or fails partly by luck."""
    from cxrxai.anatomy_check import check_radiograph, check_reframings
    from cxrxai.explain import Explainer
    from cxrxai.io import read_radiograph

    explainer = Explainer.from_bundle(bundle)
    results, reframings = {}, {}
    for path in sorted(REAL_RADIOGRAPHS.glob("*.dcm")):
        radiograph = read_radiograph(path)
        checks = check_radiograph(explainer, radiograph, figures / f"{path.stem}-anatomy.png")
        results[path.name] = {c.name: c.as_dict() for c in checks}
        reframings[path.name] = check_reframings(explainer, radiograph, REFRAMINGS).as_dict()
    return results, reframings


def real_radiograph_section(results: dict[str, dict], reframings: dict[str, dict]) -> tuple[str, list[str]]:
    """The intended-use sentence on the masks, and the card's section on the real radiographs."""
    from cxrxai.anatomy_check import Reframing

    if not results:
        return "its lung / heart masks are untested there.", []
    failing = {name: [c for c, r in checks.items() if not r["passed"]] for name, checks in results.items()}
    sentence = (
        "its lung / heart masks pass the anatomy checks on the real radiographs below (plausibility, not a "
        "measurement against real masks)."
        if not any(failing.values())
        else "its lung / heart masks FAIL the anatomy checks on a real radiograph below: do not rely on them."
    )
    lines = [
        "## Anatomy on real radiographs",
        "",
        "Real PA chest radiographs without masks (`resources/real/`), checked by `cxrxai bundle "
        "check-anatomy`: each lung on its side and in one piece, the heart one piece between the lungs, "
        "low, outside the lung fields, with a plausible cardiothoracic ratio. Then the same checks on "
        f"{REFRAMINGS} copies of each film turned by up to 4 degrees, moved, cropped and re-windowed "
        "(`--reframings`): masks that pass only at the film's own framing have not transferred.",
        "",
    ]
    for name, checks in results.items():
        passed = sum(r["passed"] for r in checks.values())
        verdict = "all pass" if not failing[name] else "failing: " + ", ".join(failing[name])
        figure = Path(name).stem + "-anatomy.png"
        lines.append(f"- {name}: {passed} of {len(checks)} checks pass ({verdict}); figure `{figure}`")
        if name in reframings:
            lines.append(f"  - {Reframing(**reframings[name]).summary()}")
    return sentence, [*lines, ""]


def model_card(report: dict, recipe: Recipe, timings: dict[str, float]) -> str:
    anatomy = report["anatomy"]
    best = best_localisation(report)
    masks_sentence, real_lines = real_radiograph_section(
        report.get("real_radiographs", {}), report.get("real_radiograph_reframings", {})
    )
    lines = [
        "# cxrxai default model (synthetic phantoms only)",
        "",
        "**Intended use: demonstration and pipeline validation. Not for diagnosis.**",
        "It has never been trained on a real radiograph: its findings on real images mean nothing, and",
        masks_sentence,
        "",
        "## Model",
        "",
        f"MONAI U-Net (channels {'-'.join(map(str, recipe.channels))}, strides "
        f"{'-'.join(map(str, recipe.strides))}, one residual unit per level) with a lung / heart",
        "segmentation head and a linear head over the average-pooled bottleneck and last decoder features"
        + (" and the max-pooled last decoder features" if recipe.max_pool else ""),
        f"for the 14 CheXpert / MIMIC-CXR observations; {recipe.input_size} px letterboxed input.",
        "",
        "## Training data",
        "",
        f"{recipe.train_count} synthetic chest radiograph phantoms",
        f"(`cxrxai phantoms --seed {recipe.train_seed} --size {recipe.render_rows}`), labels in the CheXpert",
        "coding (blank = not mentioned, a few uncertain positives, mapped to 1), lung and heart masks"
        + (
            f", and the findings' masks (weight {recipe.finding_mask_weight}, on "
            + FINDING_MAPS[recipe.finding_mask_map]
            + (
                f"; with a smooth pointing game, weight {recipe.finding_pointing_weight}"
                + (
                    f", not on {', '.join(recipe.finding_pointing_skip)}"
                    if recipe.finding_pointing_skip
                    else ""
                )
                if recipe.finding_pointing_weight > 0
                else ""
            )
            + ")."
            if recipe.finding_mask_weight > 0
            else "."
        ),
        "One tenth held back for thresholds",
        f"(Youden's J). {recipe.epochs} epochs, batch {recipe.batch_size}, AdamW, learning rate "
        f"{recipe.learning_rate}, cosine schedule, seed {recipe.training_seed}.",
        "",
        "## Evaluation",
        "",
        f"{report['images']} freshly generated held-out phantoms "
        f"(seed {recipe.heldout_seed}, {recipe.render_rows} rows).",
        "",
        f"- Mean AUROC: {report['mean_auroc']:.3f}",
    ]
    for name in ("dice_lungs", "dice_heart", "ctr_abs_error"):
        if name in anatomy:
            entry = anatomy[name]
            lines.append(
                f"- {name}: {entry['mean']:.3f} (95% CI {entry['ci95'][0]:.3f}-{entry['ci95'][1]:.3f})"
            )
    if best:
        name, entry = best
        lines.append(
            f"- Best pointing game over all localised findings: {name}, {entry['mean']:.3f} "
            f"(95% CI {entry['ci95'][0]:.3f}-{entry['ci95'][1]:.3f}, n = {entry['n']})"
        )
    per_finding = {
        finding: max(m["pointing_game"]["mean"] for m in entries.values())
        for finding, entries in report.get("localisation_by_finding", {}).items()
    }
    if per_finding:
        lines.append(
            "- Pointing game of the best method / layer for each finding: "
            + ", ".join(f"{finding} {value:.2f}" for finding, value in per_finding.items())
        )
    lines += [
        "",
        "Per finding and per method / layer: `evaluation.md` and `evaluation.json` beside this file.",
        "",
        *real_lines,
    ]
    lines += ["## How long it took", "", f"On {machine(recipe.device)}:", ""]
    lines += [f"- {name}: {seconds / 60:.1f} min" for name, seconds in timings.items()]
    overrides = recipe_arguments(recipe)
    command = f'make model MODEL_ARGS="{overrides}"' if overrides else "make model"
    lines += ["", f"Re-create with `{command}`.", ""]
    return "\n".join(lines)


def recipe_arguments(recipe: Recipe) -> str:
    """The `python -m cxrxai.train.default_model` options that turn the default recipe into this one."""
    defaults = Recipe()
    parts = []
    for name in OVERRIDABLE:
        value = getattr(recipe, name)
        if value == getattr(defaults, name):
            continue
        option = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            parts.append(option if value else f"--no-{option[2:]}")
        elif isinstance(value, tuple):
            parts.append(f"{option} {' '.join(shlex.quote(str(item)) for item in value)}")
        else:
            parts.append(f"{option} {value}")
    return " ".join(parts)


def best_localisation(report: dict, metric: str = "pointing_game") -> tuple[str, dict] | None:
    scored = [(name, m[metric]) for name, m in report["localisation"].items() if metric in m]
    return max(scored, key=lambda item: item[1]["mean"]) if scored else None


def machine(device: str = "cpu") -> str:
    cpu = f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} CPU cores"
    if device.startswith("cuda"):
        import torch

        return f"{cpu}, training on {torch.cuda.get_device_name(torch.device(device))}"
    return cpu


def main(argv: list[str] | None = None) -> int:
    """`make model`'s entry point; a bad option, or bad data met while building, is one line on stderr
    and exit status 2."""
    import argparse

    from cxrxai.errors import CXRXAIError

    parser = argparse.ArgumentParser(description="Train, evaluate and install the default bundle.")
    parser.add_argument("work", type=Path, nargs="?", default=Path("build/model"))
    parser.add_argument("--from", dest="start", choices=STEPS, default=STEPS[0], help="resume at this step")
    defaults = Recipe()
    # Larger recipes (a GPU session, or a long CPU run): every size in the recipe can be overridden.
    for name in OVERRIDABLE:
        default = getattr(defaults, name)
        if isinstance(default, bool):
            parser.add_argument(
                f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=default
            )
        elif name == "finding_pointing_skip":
            parser.add_argument(f"--{name.replace('_', '-')}", nargs="+", default=[], metavar="FINDING")
        elif isinstance(default, tuple):
            parser.add_argument(f"--{name.replace('_', '-')}", type=int, nargs="+", default=list(default))
        else:
            choices = list(FINDING_MAPS) if name == "finding_mask_map" else None
            parser.add_argument(
                f"--{name.replace('_', '-')}", type=type(default), default=default, choices=choices
            )
    args = parser.parse_args(argv)
    try:
        network = network_from_options(args.channels, args.strides, args.max_pool)
        options: dict[str, Any] = {name: getattr(args, name) for name in OVERRIDABLE}
        options.update(  # argparse gives lists; the recipe holds tuples
            channels=network.channels,
            strides=network.strides,
            finding_pointing_skip=tuple(args.finding_pointing_skip),
        )
        recipe = replace(defaults, **options)
        result = build(args.work, recipe=recipe, start=args.start)
    except CXRXAIError as error:  # as `cxrxai` reports them: one line, exit 2
        print(f"make model: {error}", file=sys.stderr)
        return 2
    print(f"mean AUROC {result['mean_auroc']:.3f}; bundle in {DEFAULT_BUNDLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
