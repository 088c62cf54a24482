"""Training data layouts (CheXpert, MIMIC-CXR-JPG), label policies, thresholds, and a tiny end-to-end run."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from cxrxai.cli import main
from cxrxai.datasets.training import label_value, load_samples, positive_weights
from cxrxai.errors import CXRXAIError
from cxrxai.labels import FINDINGS
from cxrxai.model.bundle import load_bundle
from cxrxai.samples import chest_image
from cxrxai.train.trainer import BatchAugmentation, tune_thresholds


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
    from cxrxai.datasets.training import Sample

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
        "--compile",  # as make model trains: the compiled network is as reproducible as the eager one
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


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--max-pool", "--finding-mask-weight", "1"],
        ["--max-pool", "--finding-mask-weight", "1", "--finding-mask-map", "gradcam"],
        [
            "--finding-mask-weight",
            "1",
            "--finding-mask-map",
            "gradcam",
            "--finding-pointing-weight",
            "1",
            "--finding-pointing-skip",
            "Fracture",
        ],
    ],
    ids=["plain", "max-pool+finding-masks", "max-pool+masks-on-gradcam", "masks-on-gradcam+pointing"],
)
def test_interrupted_training_resumes_to_the_same_model(tmp_path, monkeypatch, options):
    """A run killed after its first epoch's checkpoint and resumed with the same options gives the model
    of an uninterrupted run: shuffling, augmentation, optimiser and schedule state all come back (with
    finding masks, the training-only map head's too; it stays out of the bundle)."""
    import torch

    import cxrxai.train.trainer as trainer

    data = tmp_path / "phantoms"
    assert main(["phantoms", "--count", "12", "--out", str(data), "--size", "96", "--workers", "1"]) == 0
    args = ["train", "--data", str(data), "--epochs", "2", "--batch-size", "4", "--input-size", "32"]
    args += ["--channels", "4", "8", "16", *options]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    real_save = torch.save

    def save_then_die(state, path):
        real_save(state, path)
        raise KeyboardInterrupt  # the machine went away after epoch 1's checkpoint

    monkeypatch.setattr(trainer.torch, "save", save_then_die)
    assert main([*args, "--out", str(tmp_path / "interrupted")]) != 0
    monkeypatch.setattr(trainer.torch, "save", real_save)
    assert torch.load(tmp_path / "interrupted" / "checkpoints" / "last.pt", weights_only=False)["epoch"] == 1
    assert main([*args, "--out", str(tmp_path / "interrupted"), "--resume"]) == 0
    whole, resumed = load_bundle(tmp_path / "whole"), load_bundle(tmp_path / "interrupted")
    assert whole.content_hash == resumed.content_hash
    assert whole.spec.network.max_pool == ("--max-pool" in options)
    assert not any(key.startswith(("finding_maps", "scale", "offset")) for key in whole.network.state_dict())


def test_finding_masks_are_known_from_a_mask_file_or_a_negative_label(tmp_path):
    import torch

    from cxrxai.datasets.training import Sample
    from cxrxai.labels import slug
    from cxrxai.model.bundle import Preprocessing
    from cxrxai.train.trainer import RadiographDataset

    data = tmp_path / "phantoms"
    assert main(["phantoms", "--count", "12", "--out", str(data), "--size", "96", "--workers", "1"]) == 0
    samples = load_samples(data, "chexpert", "train", "ones")
    dataset = RadiographDataset(samples, Preprocessing(input_size=32), finding_masks=True)
    located = 0
    for sample, item in zip(samples, (dataset[i] for i in range(len(samples))), strict=True):
        assert item["finding_masks"].shape == (14, 32, 32) and item["finding_masks"].dtype == torch.bool
        for j, name in enumerate(FINDINGS):
            has_file = sample.mask_folder is not None and (sample.mask_folder / f"{slug(name)}.png").is_file()
            assert bool(item["finding_masks"][j].any()) == has_file, (sample.image, name)
            expected = name != "No Finding" and (has_file or sample.labels[j] == 0.0)
            assert bool(item["finding_known"][j]) == expected, (sample.image, name)
            located += has_file
    assert located > 0
    bare = Sample(samples[0].image, samples[0].labels, None)  # real data without masks: nothing scored
    assert not RadiographDataset([bare], Preprocessing(input_size=32), finding_masks=True)[0][
        "finding_known"
    ].any()


def test_finding_mask_loss_scores_only_known_maps():
    import torch

    from cxrxai.train.trainer import JointLoss

    loss = JointLoss(torch.ones(14), 1.0, finding_mask_weight=1.0)
    masks = torch.zeros(2, 14, 16, 16)
    masks[0, 3, 4:8, 4:8] = 1.0
    known = torch.zeros(2, 14, dtype=torch.bool)
    known[0, 3] = known[1, 5] = True
    right = (masks * 2 - 1) * 20  # confident and correct logits
    assert float(loss.finding_mask_loss(right, masks, known)) < 1e-3
    wrong_where_unknown = right.clone()
    wrong_where_unknown[0, 4] = -wrong_where_unknown[0, 4]
    wrong_where_unknown[1, :5] = 20.0
    assert float(loss.finding_mask_loss(wrong_where_unknown, masks, known)) < 1e-3
    missed = right.clone()
    missed[0, 3] = -20.0  # the lesion not marked: BCE and Dice both see it
    assert float(loss.finding_mask_loss(missed, masks, known)) > 1.0


def test_finding_mask_loss_punishes_a_map_whose_peak_lies_outside_the_mask():
    import torch

    from cxrxai.train.trainer import JointLoss

    loss = JointLoss(torch.ones(14), 1.0, finding_mask_weight=1.0, pointing_weight=1.0)
    masks = torch.zeros(1, 14, 16, 16)
    masks[0, 4, 4:8, 4:8] = 1.0  # a nodule
    known = torch.zeros(1, 14, dtype=torch.bool)
    known[0, 4] = True
    marked = (masks * 2 - 1) * 5.0  # the nodule marked, the rest dark
    stray = marked.clone()
    stray[0, 4, 12, 12] = 10.0  # and one brighter spot elsewhere, as on a co-present consolidation
    # one pixel of 256 costs BCE and Dice together about 0.07; the peak outside the mask costs ~5 more
    extra = loss.finding_mask_loss(stray, masks, known) - loss.finding_mask_loss(marked, masks, known)
    assert float(extra) > 1.0
    full = torch.ones(1, 14, 16, 16)  # a mask with no pixel outside it: nothing to point wrongly at
    assert torch.isfinite(loss.finding_mask_loss(marked, full, known))
    without = JointLoss(torch.ones(14), 1.0, finding_mask_weight=1.0)  # pointing_weight 0: BCE and Dice
    extra = without.finding_mask_loss(stray, masks, known) - without.finding_mask_loss(marked, masks, known)
    assert float(extra) < 0.2
    # a finding the pointing term skips is scored by BCE and Dice alone, as with pointing_weight 0
    skipping = JointLoss(
        torch.ones(14), 1.0, finding_mask_weight=1.0, pointing_weight=1.0, pointing_skip=("Lung Lesion",)
    )
    assert FINDINGS[4] == "Lung Lesion"
    skipped = skipping.finding_mask_loss(stray, masks, known) - skipping.finding_mask_loss(
        marked, masks, known
    )
    assert float(skipped) == pytest.approx(float(extra))


def test_finding_mask_loss_weighs_a_rare_finding_above_one_image_of_a_common_one():
    import torch

    from cxrxai.train.trainer import JointLoss

    loss = JointLoss(torch.ones(14), 1.0, finding_mask_weight=1.0)
    masks = torch.zeros(8, 14, 16, 16)
    masks[:, 2, 2:10, 2:10] = 1.0  # a common finding in every image
    masks[0, 12, 4:6, 4:6] = 1.0  # a rare one in one image
    known = torch.zeros(8, 14, dtype=torch.bool)
    known[:, 2] = True
    known[0, 12] = True
    right = (masks * 2 - 1) * 20
    rare_missed, common_missed_once = right.clone(), right.clone()
    rare_missed[0, 12] = -20.0
    common_missed_once[0, 2] = -20.0
    rare, common = (
        loss.finding_mask_loss(rare_missed, masks, known),
        loss.finding_mask_loss(common_missed_once, masks, known),
    )
    # missing the rare finding's one small mask costs more than missing one of the common finding's eight
    # large ones (averaged over image-finding pairs instead, it cost a fifth as much)
    assert float(rare) > float(common) > 0


@pytest.mark.parametrize("flag", ["--finding-mask-weight", "--finding-pointing-weight"])
def test_a_negative_finding_mask_weight_is_one_line(tmp_path, capsys, flag):
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "b"), flag, "-1"]
    assert main(args) == 2
    assert f"{flag} must be 0 (off) or positive" in capsys.readouterr().err


def _square_batch(n: int = 6, size: int = 32):
    """Images that equal their first mask: a bright square, off-centre so that a rotation shows."""
    import torch

    masks = torch.zeros(n, 3, size, size)
    masks[:, 0, 6:20, 8:26] = 1.0
    return masks[:, :1].clone(), masks


def test_batch_augmentation_moves_masks_with_images_and_is_seeded():
    images, masks = _square_batch()
    first_images, first_masks = BatchAugmentation(3, noise_probability=0.0, contrast_probability=0.0)(
        images, masks
    )
    assert set(first_masks.unique().tolist()) <= {0.0, 1.0}  # nearest-neighbour: masks stay binary
    moved = (first_masks[:, 0] != masks[:, 0]).flatten(1).any(1)
    assert moved.sum() >= 3  # most images were transformed (probability 0.8), each its own way
    assert len({tuple(m.flatten().tolist()) for m in first_masks[:, 0]}) >= 3
    # the image follows its mask: bilinear and nearest sampling differ only along the square's edge
    disagree = ((first_images[:, 0] > 0.5) != (first_masks[:, 0] > 0.5)).float().mean()
    assert disagree < 0.02
    again_images, again_masks = BatchAugmentation(3, noise_probability=0.0, contrast_probability=0.0)(
        images, masks
    )
    assert (again_images == first_images).all() and (again_masks == first_masks).all()


def test_batch_augmentation_photometric_only_changes_the_image():
    import torch

    images, masks = _square_batch()
    images = images * 0.6 + 0.2
    still = BatchAugmentation(0, affine_probability=0.0, contrast_probability=0.0, noise_probability=0.0)
    same_images, same_masks = still(images, masks)
    torch.testing.assert_close(same_images, images)
    assert (same_masks == masks).all()
    contrast = BatchAugmentation(0, affine_probability=0.0, contrast_probability=1.0, noise_probability=0.0)
    ramp = images + torch.linspace(0.0, 0.2, images.shape[-1])  # mid-tones for gamma to move
    adjusted, kept = contrast(ramp, masks)
    assert (kept == masks).all()
    # gamma keeps each image's range and its order of intensities, but moves the mid-tones
    torch.testing.assert_close(adjusted.amin(dim=(1, 2, 3)), ramp.amin(dim=(1, 2, 3)))
    torch.testing.assert_close(adjusted.amax(dim=(1, 2, 3)), ramp.amax(dim=(1, 2, 3)))
    order = ramp.flatten(1).argsort(dim=1)  # each image's pixels from darkest to brightest
    in_order = adjusted.flatten(1).gather(1, order)
    assert (in_order[:, 1:] >= in_order[:, :-1] - 1e-6).all()
    assert float((adjusted - ramp).abs().amax()) > 1e-3
    noisy, _ = BatchAugmentation(0, affine_probability=0.0, noise_probability=1.0)(images, masks)
    assert 0.01 < float((noisy - images).std()) < 0.03


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


def test_the_gradcam_finding_map_is_the_map_the_engine_shows(explainer64, chest_input):
    """With --finding-mask-map gradcam the masks supervise decoder1's Grad-CAM map itself: undoing the
    learnt scale and offset, then the method's ReLU and 1 / Z, gives the engine's gradcam/decoder1 map."""
    import torch

    from cxrxai.train.trainer import FindingMapHead

    head = FindingMapHead(explainer64.network, "gradcam").double().eval()
    with torch.no_grad():
        head.scale.copy_(torch.linspace(-1.0, 2.0, len(FINDINGS)))
        head.offset.copy_(torch.linspace(-3.0, 1.0, len(FINDINGS)))
        _, _, maps = head(chest_input)
    targets = [FINDINGS.index(name) for name in ("Cardiomegaly", "Fracture", "Pneumothorax")]
    raw = explainer64.explain_tensor(chest_input, targets, ["gradcam"])
    shown = {h.target: h.values for h in raw.heatmaps if h.layer == "decoder1"}
    z = maps.shape[-1] * maps.shape[-2]
    for t in targets:
        scale = torch.nn.functional.softplus(head.scale[t])
        unscaled = (torch.relu((maps[0, t] - head.offset[t]) / scale) / z).detach()
        np.testing.assert_allclose(unscaled.numpy(), shown[FINDINGS[t]], rtol=1e-10, atol=1e-12)


def test_an_unknown_finding_map_is_refused():
    from cxrxai.model.network import NetworkConfig, build_network
    from cxrxai.train.trainer import FindingMapHead

    with pytest.raises(ValueError, match="unknown finding map 'cam'; one of: head, gradcam"):
        FindingMapHead(build_network(NetworkConfig(channels=(4, 8, 16), strides=(2, 2))), "cam")
