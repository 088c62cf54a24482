"""`make model` end to end on a tiny recipe: phantoms, training, held-out evaluation, bundle and card."""

from __future__ import annotations

import json

import numpy as np

from cxrxai.model.bundle import load_bundle
from cxrxai.plausibility import anatomy_checks
from cxrxai.train.default_model import Recipe, build, main, recipe_arguments


def test_tiny_recipe_installs_a_bundle_with_its_model_card(tmp_path):
    """The recipe trains torch.compile'd, as `make model` does; the bundle holds the plain network."""
    recipe = Recipe(
        train_count=24,
        heldout_count=8,
        render_rows=96,
        input_size=32,
        channels=(4, 8, 16),
        strides=(1, 2),
        epochs=1,
        batch_size=8,
        finding_pointing_weight=0.5,
        finding_pointing_skip=("Fracture", "Pleural Other"),
        training_seed=3,
    )
    target = tmp_path / "installed"
    report = build(tmp_path / "work", target, recipe)
    bundle = load_bundle(target)  # the hash still matches: the card is not part of the content
    assert bundle.spec.network.channels == (4, 8, 16) and bundle.spec.network.strides == (1, 2)
    assert bundle.spec.network.max_pool and "finding masks weighted 1.0" in bundle.spec.description
    assert "seed 3" in bundle.spec.description  # the recipe's training seed reached the trainer
    assert not (target / "checkpoints").exists()
    card = (target / "docs" / "README.md").read_text()
    assert "channels 4-8-16, strides 1-2" in card and "Not for diagnosis" in card
    assert "max-pooled last decoder features" in card and "findings' masks (weight 1.0" in card
    assert "pointing game weighted 0.5 (not Fracture, Pleural Other)" in bundle.spec.description
    assert (
        "with a smooth pointing game, weight 0.5, not on Fracture, Pleural Other" in card
        and "cosine schedule, seed 3." in card
    )
    assert f"Mean AUROC: {report['mean_auroc']:.3f}" in card
    assert json.loads((target / "docs" / "evaluation.json").read_text())["images"] == 8
    timings = json.loads((tmp_path / "work" / "timings.json").read_text())
    assert set(timings) == {"training phantoms", "train", "held-out phantoms", "evaluate"}
    assert all(f"- {step}: " in card for step in timings)
    assert "--channels 4 8 16 --strides 1 2" in card  # how to re-create this very recipe
    assert (
        "--finding-pointing-weight 0.5 --finding-pointing-skip Fracture 'Pleural Other' --training-seed 3"
        in card
    )
    # the real radiograph's anatomy checks, whatever this one-epoch model makes of it
    assert "## Anatomy on real radiographs" in card
    # a one-epoch model may find no lung on the radiograph as framed yet some on a copy: all names are allowed
    full = np.ones((8, 8), bool)
    names = {check.name for check in anatomy_checks(full, full, full)} | {"heart found", "lungs found"}
    for stage in ("after", "before"):  # anatomical post-processing
        checks = report["real_radiographs"]["pa-chest-wg04-rg1.dcm"][stage]
        passed = sum(check["passed"] for check in checks.values())
        line = f"pa-chest-wg04-rg1.dcm, {stage} post-processing: {passed} of {len(checks)} checks pass"
        assert line in card
        reframed = report["real_radiograph_reframings"]["pa-chest-wg04-rg1.dcm"][stage]
        assert reframed["copies"] == 16
        assert set(checks) <= names and set(reframed["pass_share"]) <= names
        assert f"over 16 re-framed copies: {reframed['mean_passed']:.1f} checks pass on average" in card
    before = report["anatomy_before_post_processing"]
    assert f"before post-processing {before['dice_lungs']['mean']:.3f}" in card
    assert (target / "docs" / "pa-chest-wg04-rg1-anatomy.png").stat().st_size > 10_000


def test_recipe_arguments_spell_switches_as_options():
    assert recipe_arguments(Recipe()) == ""
    assert recipe_arguments(Recipe(compile=False, epochs=3)) == "--epochs 3 --no-compile"
    plain = Recipe(max_pool=False, finding_mask_weight=0.0)
    assert recipe_arguments(plain) == "--no-max-pool --finding-mask-weight 0.0"
    other = "head" if Recipe().finding_mask_map == "gradcam" else "gradcam"
    assert recipe_arguments(Recipe(finding_mask_map=other)) == f"--finding-mask-map {other}"


def test_a_bad_strides_option_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "work"), "--channels", "4", "8", "16", "--strides", "3"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("make model: --strides needs 2 values of 1 or 2") and error.count("\n") == 1
    assert not (tmp_path / "work").exists()  # nothing was started


def test_a_negative_loss_weight_is_one_line_and_exit_2_before_any_phantom_is_made(tmp_path, capsys):
    assert main([str(tmp_path / "work"), "--finding-pointing-weight", "-1"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("make model: --finding-pointing-weight must be 0 (off) or positive")
    assert error.count("\n") == 1
    assert not (tmp_path / "work").exists()  # nothing was started


def test_an_unknown_finding_to_skip_is_one_line_and_exit_2_before_any_phantom_is_made(tmp_path, capsys):
    assert main([str(tmp_path / "work"), "--finding-pointing-skip", "Fractures"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("make model: --finding-pointing-skip: no finding named 'Fractures'; one of: ")
    assert error.count("\n") == 1
    assert not (tmp_path / "work").exists()


def test_missing_training_data_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "work"), "--from", "train"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("make model: ") and "train.csv not found" in error
