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

from cxrxai.explain import EVALUATED_METHODS
from cxrxai.model.layout import DEFAULT_BUNDLE
from cxrxai.model.network import network_from_options
from cxrxai.train import FINDING_MAPS


@dataclass(frozen=True)
class Recipe:
    train_count: int = 4000
    # 1000 held-out phantoms: enough positives of the rare findings for a stable score
    heldout_count: int = 1000
    render_rows: int = 256
    # on 2 cores more epochs bought more than more pixels did (docs/model-development.md)
    input_size: int = 128
    # four levels: an 8 x 8 bottleneck at 128 px lets every pixel see the whole chest, which keeps the lungs
    # on their own sides on the real radiograph (docs/model-development.md has every run)
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    # decoder1 max-pooled beside the average, and the finding masks as a training signal: higher AUROC and
    # maps inside the findings (docs/model-development.md)
    max_pool: bool = True
    finding_mask_weight: float = 1.0
    # the masks supervise decoder1's own Grad-CAM map, the map the node shows
    finding_mask_map: str = "gradcam"
    # off: over three runs the term bought Lung Lesion and cost another finding or the real radiograph's
    # anatomy each time (docs/model-development.md); `make model MODEL_ARGS="--finding-pointing-weight 1"`
    finding_pointing_weight: float = 0.0
    finding_pointing_skip: tuple[str, ...] = ()
    # fewer epochs under-fitted: a model as good on its training images as on held-out ones
    epochs: int = 56
    batch_size: int = 16
    learning_rate: float = 2e-3
    train_seed: int = 2026  # the training phantoms
    heldout_seed: int = 2027  # the held-out phantoms
    # the training's own seed (initial weights, batch order, augmentation): a change is judged over more
    # than one, since the real radiograph's checks move between seeds
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
        "evaluate": lambda: report.update(
            evaluate(heldout, trained, work / "evaluation", methods=EVALUATED_METHODS)
        ),
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


# Re-framed copies of each real radiograph the card checks the masks on (plausibility.check_reframings)
REFRAMINGS = 16


def real_radiograph_checks(bundle: Path, figures: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """The anatomy checks (`cxrxai.plausibility`) of the bundle's masks on each real radiograph in
    REAL_RADIOGRAPHS, with an overlay figure each in `figures`, and how they fare over REFRAMINGS re-framed
    copies of it: the segmentation must look right on a real PA radiograph, no real masks are at hand to
    score it, and one framing of one radiograph passes or fails partly by luck."""
    from cxrxai.explain import Explainer
    from cxrxai.io import read_radiograph
    from cxrxai.plausibility import check_radiograph, check_reframings

    explainer = Explainer.from_bundle(bundle)
    results, reframings = {}, {}
    for path in sorted(REAL_RADIOGRAPHS.glob("*.dcm")):
        radiograph = read_radiograph(path)
        checked = check_radiograph(explainer, radiograph, figures / f"{path.stem}-anatomy.png")
        after, before = check_reframings(explainer, radiograph, REFRAMINGS)
        results[path.name] = {
            "after": {c.name: c.as_dict() for c in checked.after},
            "before": {c.name: c.as_dict() for c in checked.before},
        }
        reframings[path.name] = {"after": after.as_dict(), "before": before.as_dict()}
    return results, reframings


def real_radiograph_section(results: dict[str, dict], reframings: dict[str, dict]) -> tuple[str, list[str]]:
    """The intended-use sentence on the masks, and the card's section on the real radiographs."""
    from cxrxai.plausibility import Reframing

    if not results:
        return "its lung / heart masks are untested there.", []
    failing = {
        name: [c for c, r in checks["after"].items() if not r["passed"]] for name, checks in results.items()
    }
    sentence = (
        "its lung / heart masks (after anatomical post-processing) pass the anatomy checks on the real "
        "radiographs below (plausibility, not a measurement against real masks)."
        if not any(failing.values())
        else "its lung / heart masks FAIL the anatomy checks on a real radiograph below: do not rely on them."
    )
    lines = [
        "## Anatomy on real radiographs",
        "",
        "Real PA chest radiographs without masks (`resources/real/`), checked by `cxrxai bundle "
        "check-anatomy`: each lung on its side and in one piece, the heart one piece between the lungs, "
        "low, outside the lung fields, with a plausible cardiothoracic ratio. Then the same checks on "
        f"{REFRAMINGS} copies of each radiograph turned by up to 4 degrees, moved, cropped and re-windowed "
        "(`--reframings`): masks that pass only at the radiograph's own framing have not transferred. "
        "Every result uses the masks after anatomical post-processing (`cxrxai/anatomy_masks.py`: the "
        "largest piece of each lung on its side, the heart's pieces between the lungs joined, holes filled); "
        "the network's thresholded masks before it are reported too.",
        "",
    ]
    for name, checks in results.items():
        figure = Path(name).stem + "-anatomy.png"
        for stage, title in (("after", "after post-processing"), ("before", "before post-processing")):
            staged = checks[stage]
            failed = [c for c, r in staged.items() if not r["passed"]]
            passed = len(staged) - len(failed)
            verdict = "all pass" if not failed else "failing: " + ", ".join(failed)
            where = f"; figure `{figure}`" if stage == "after" else ""
            lines.append(f"- {name}, {title}: {passed} of {len(staged)} checks pass ({verdict}){where}")
            if name in reframings:
                lines.append(f"  - {Reframing(**reframings[name][stage]).summary()}")
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
    before = report.get("anatomy_before_post_processing", {})
    for name in ("dice_lungs", "dice_heart", "ctr_abs_error"):
        if name in anatomy:
            entry = anatomy[name]
            line = f"- {name}: {entry['mean']:.3f} (95% CI {entry['ci95'][0]:.3f}-{entry['ci95'][1]:.3f})"
            if name in before:
                line += f"; before post-processing {before[name]['mean']:.3f}"
            lines.append(line)
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
