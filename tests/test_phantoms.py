"""Phantoms: deterministic, labels consistent with masks and each other, files readable and valid."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import ndimage

from cxrxai.cli import main
from cxrxai.io import read_radiograph
from cxrxai.labels import FINDINGS
from cxrxai.phantoms.findings import OPACITY_TYPES
from cxrxai.phantoms.generator import make_phantom
from cxrxai.phantoms.writer import CHEXPERT_COLUMNS
from tests.dicom_validation import dciodvfy_errors, needs_dciodvfy

SIZE = 160
ALWAYS_LOCALISED = (
    "Lung Lesion",
    "Consolidation",
    "Pneumonia",
    "Edema",
    "Atelectasis",
    "Pleural Effusion",
    "Pneumothorax",
    "Pleural Other",
    "Fracture",
    "Support Devices",
    "Cardiomegaly",
)


@pytest.fixture(scope="module")
def phantoms():
    return [make_phantom(11, i, rows=SIZE) for i in range(40)]


def test_deterministic_for_seed_and_index():
    a, b, c = make_phantom(3, 5, rows=SIZE), make_phantom(3, 5, rows=SIZE), make_phantom(3, 6, rows=SIZE)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.labels == b.labels
    assert not np.array_equal(a.image, c.image) if a.image.shape == c.image.shape else True


def test_label_logic(phantoms):
    seen = set()
    for phantom in phantoms:
        labels = phantom.labels
        others = [labels[name] for name in FINDINGS if name != "No Finding"]
        assert labels["No Finding"] == int(not any(others))  # No Finding exactly when none is present
        if any(labels[name] for name in OPACITY_TYPES):
            assert labels["Lung Opacity"] == 1  # CheXpert hierarchy
        seen |= {name for name, value in labels.items() if value}
    assert len(seen) >= 10  # 40 images cover most observations


def test_masks_match_labels_and_image(phantoms):
    for phantom in phantoms:
        assert phantom.image.dtype == np.float32 and phantom.image.min() >= 0 and phantom.image.max() <= 1
        for name in ("Right Lung", "Left Lung", "Heart"):
            assert phantom.masks[name].shape == phantom.image.shape and phantom.masks[name].sum() > 50
        assert not (phantom.masks["Right Lung"] & phantom.masks["Left Lung"]).any()
        # the patient's right lung is on the image left (PA convention)
        right_c = np.argwhere(phantom.masks["Right Lung"])[:, 1].mean()
        left_c = np.argwhere(phantom.masks["Left Lung"])[:, 1].mean()
        assert right_c < left_c
        for name in ALWAYS_LOCALISED:
            if phantom.labels[name]:
                assert name in phantom.masks and phantom.masks[name].any(), name
            else:
                assert name not in phantom.masks


def test_cardiomegaly_means_ctr_above_one_half_on_pa(phantoms):
    pa = [p for p in phantoms if not p.patient.ap]
    assert pa
    for phantom in pa:
        assert (phantom.ctr > 0.5) == bool(phantom.labels["Cardiomegaly"]), (
            phantom.ctr,
            phantom.labels["Cardiomegaly"],
        )


def test_findings_change_the_image():
    """A finding is visible: the same patient and exposure with and without it differ inside its mask."""
    from cxrxai.phantoms.findings import render_findings
    from cxrxai.phantoms.thorax import Patient, build_anatomy

    rng = np.random.default_rng(0)
    patient = Patient.sample(rng)
    for name in ("Pleural Effusion", "Lung Lesion", "Pneumothorax", "Consolidation", "Atelectasis"):
        base = build_anatomy(patient, (SIZE, SIZE), np.random.default_rng(1))
        sick = build_anatomy(patient, (SIZE, SIZE), np.random.default_rng(1))
        present = {f: f == name for f in FINDINGS}
        mask = render_findings(sick, present, np.random.default_rng(2)).masks[name]
        difference = np.abs((sick.soft + sick.vessels) - (base.soft + base.vessels))
        assert difference[mask].mean() > 0.3, name


def test_rib_fractures_break_a_rib_over_aerated_lung():
    """Where a rib crosses aerated lung is where its break shows on a frontal radiograph."""
    from cxrxai.phantoms.findings import render_findings
    from cxrxai.phantoms.thorax import Patient, build_anatomy

    for seed in range(5):
        patient = Patient.sample(np.random.default_rng(seed))
        base = build_anatomy(patient, (SIZE, SIZE), np.random.default_rng(seed))
        broken = build_anatomy(patient, (SIZE, SIZE), np.random.default_rng(seed))
        present = {f: f == "Fracture" for f in FINDINGS}
        mask = render_findings(broken, present, np.random.default_rng(seed)).masks["Fracture"]
        centre = tuple(np.argwhere(mask).mean(axis=0).round().astype(int))
        assert broken.lungs[centre], seed
        assert np.abs(broken.bone - base.bone)[mask].max() > 0.3, seed


def _anatomy_of_one_patient(seed: int):
    """The anatomy of the patient sampled with `seed`, without findings."""
    from cxrxai.phantoms.thorax import Patient, build_anatomy

    return build_anatomy(Patient.sample(np.random.default_rng(seed)), (SIZE, SIZE), np.random.default_rng(0))


def _findings_of_one_patient(seed: int, names: tuple[str, ...], anatomy=None) -> dict[str, np.ndarray]:
    """The masks `render_findings` draws for these findings into one sampled patient's anatomy (drawn
    into `anatomy` when given, so a test can look at it afterwards)."""
    from cxrxai.phantoms.findings import render_findings

    anatomy = _anatomy_of_one_patient(seed) if anatomy is None else anatomy
    present = {f: f in names for f in FINDINGS}
    return render_findings(anatomy, present, np.random.default_rng(seed)).masks


def test_rib_fractures_from_one_blow_break_neighbouring_ribs_on_one_side():
    heights = []
    for seed in range(12):
        mask = _findings_of_one_patient(seed, ("Fracture",))["Fracture"]
        columns = np.argwhere(mask)[:, 1]
        assert (columns < SIZE / 2).all() or (columns >= SIZE / 2).all(), seed  # one side of the chest
        heights.append(int(np.ptp(np.argwhere(mask)[:, 0])) + 1)
    one_rib = min(heights)
    assert one_rib < SIZE * 0.08
    assert max(heights) > 1.5 * one_rib  # some patients have more than one broken rib


def test_rib_fractures_lie_on_the_outer_half_of_the_lung():
    """On the axillary arcs, where rib fractures are commonest, not among the hilar vessels."""
    for seed in range(12):
        anatomy = _anatomy_of_one_patient(seed)
        mask = _findings_of_one_patient(seed, ("Fracture",), anatomy)["Fracture"]
        column = np.argwhere(mask)[:, 1].mean()
        lungs = np.argwhere(anatomy.lungs)[:, 1]
        middle = SIZE / 2
        edge = lungs.max() if column > middle else lungs.min()
        assert abs(column - middle) > 0.5 * abs(edge - middle), seed


def test_a_broken_rib_steps_off_towards_the_chest_wall():
    """An acute break moves the outer fragment; the rib on the spine's side of the line stays put."""
    from cxrxai.phantoms.findings import _break_rib, _rib_fracture_sites

    for seed in range(6):
        anatomy = _anatomy_of_one_patient(seed)
        rng = np.random.default_rng(seed)
        row, column = _rib_fracture_sites(anatomy, rng)[0]
        before = anatomy.bone.copy()
        box = _break_rib(anatomy, row, column, False, rng)
        change = np.abs(anatomy.bone - before) * box
        columns = np.arange(SIZE)
        outward = columns > column + 2 if column > SIZE / 2 else columns < column - 2
        inward = columns < column - 2 if column > SIZE / 2 else columns > column + 2
        assert change[:, outward].sum() > 5 * change[:, inward].sum() + 0.5, seed


def test_anterior_ribs_run_down_towards_the_sternum_and_cross_the_posterior_ones():
    """On a PA radiograph both rib slopes lie over both lungs: a lung's side is not written in its ribs."""
    for seed in range(4):
        anatomy = _anatomy_of_one_patient(seed)
        assert len(anatomy.anterior_ribs) == 16
        for rib in anatomy.anterior_ribs:
            lateral, medial = rib[0], rib[-1]
            assert medial[0] > lateral[0] + SIZE * 0.04  # lower at the costal cartilage
            assert abs(medial[1] - SIZE / 2) < abs(lateral[1] - SIZE / 2) - SIZE * 0.2
        for lung, sign in ((anatomy.right_lung, -1), (anatomy.left_lung, 1)):
            slopes = set()
            for rib in [*anatomy.ribs, *anatomy.anterior_ribs]:
                rows, columns = np.round(rib).astype(int).T
                inside = lung[np.clip(rows, 0, SIZE - 1), np.clip(columns, 0, SIZE - 1)]
                if inside.sum() > 5:  # the rib's run over this lung: down laterally, or down medially
                    drop = np.polyfit(sign * columns[inside], rows[inside], 1)[0]
                    slopes.add(bool(drop > 0))
            assert slopes == {True, False}, (seed, sign)


def test_the_heart_points_its_apex_down_to_the_patients_left():
    for seed in range(4):
        heart = _anatomy_of_one_patient(seed).heart
        rows, columns = np.nonzero(heart)
        lower = rows > np.median(rows)
        assert columns[lower].mean() > columns[~lower].mean() + SIZE * 0.01, seed


def test_the_heart_stands_on_the_diaphragm_with_no_lung_beneath_it():
    """On a frontal radiograph the heart rests on the hemidiaphragms: below it is abdomen, not aerated lung
    (only at its edges do the cardiophrenic angles tuck lung under it)."""
    for seed in range(6):
        anatomy = _anatomy_of_one_patient(seed)
        heart = anatomy.heart
        assert ndimage.label(heart)[1] == 1, seed
        columns = np.flatnonzero(heart.any(axis=0))
        for column in columns[len(columns) // 10 : len(columns) - len(columns) // 10]:
            bottom = np.flatnonzero(heart[:, column])[-1]
            assert not anatomy.lungs[bottom:, column].any(), (seed, column)


def test_the_heart_is_one_piece_on_a_smooth_diaphragm_at_every_image_size():
    """The heart's inferior border is the diaphragm bridged between the cardiophrenic angles, the same at
    every image size. The old diaphragm followed each lung's border up the cardiac notch, the further the
    more rows an image had, so the bridge peaked under the heart's middle: a notch over the spine in most
    phantoms, the heart cut in two there in some (2 of these 8 patients at 480 rows)."""
    from cxrxai.phantoms.thorax import Patient, build_anatomy

    for seed in range(8):
        hearts = {}
        for rows in (160, 480):
            patient = Patient.sample(np.random.default_rng(seed))
            heart = build_anatomy(patient, (rows, rows), np.random.default_rng(0)).heart
            assert ndimage.label(heart, np.ones((3, 3)))[1] == 1, (seed, rows)
            columns = np.flatnonzero(heart.any(axis=0))
            inner = columns[len(columns) // 10 : len(columns) - len(columns) // 10]
            bottom = np.array([np.flatnonzero(heart[:, c])[-1] for c in inner]) / rows
            line = np.interp(inner, inner[[0, -1]], bottom[[0, -1]])
            assert (line - bottom).max() < 0.01, (seed, rows, (line - bottom).max())
            hearts[rows] = heart
        coarse = hearts[480].reshape(160, 3, 160, 3).mean(axis=(1, 3)) > 0.5
        overlap = (coarse & hearts[160]).sum() / (coarse | hearts[160]).sum()
        assert overlap > 0.9, (seed, overlap)


def test_latitude_compression_turns_black_lungs_grey():
    """Vendor dynamic-range compression lifts the lungs towards grey and narrows their contrast with the
    abdomen below the diaphragm, as on processed radiographs."""
    from dataclasses import replace

    from cxrxai.phantoms.xray import Exposure, form_image

    anatomy = _anatomy_of_one_patient(1)
    plain = replace(Exposure.sample(np.random.default_rng(0)), latitude_compression=0.0, collimation=(0,) * 4)
    images = [
        form_image(
            anatomy.soft, anatomy.bone, replace(plain, latitude_compression=c), np.random.default_rng(3)
        )
        for c in (0.0, 0.7)
    ]
    rows = np.arange(SIZE)[:, None] * np.ones((1, SIZE))
    abdomen = (rows > np.nonzero(anatomy.lungs.any(axis=1))[0][-1] + 5) & (
        anatomy.soft > anatomy.soft.max() / 2
    )
    lungs = [image[anatomy.lungs].mean() for image in images]
    contrast = [image[abdomen].mean() - lung for image, lung in zip(images, lungs, strict=True)]
    assert lungs[1] > lungs[0] + 0.03 and contrast[1] < contrast[0] - 0.03, (lungs, contrast)


def test_the_trachea_is_a_lucent_column_over_the_spine():
    """Air in the trachea outweighs the vertebrae behind it: the column above the carina is darker than
    the mediastinum either side, as on every PA radiograph (a spine drawn denser than the trachea's air hides
    it, and a model learns a white bar down the middle that real radiographs do not have)."""
    from dataclasses import replace

    from cxrxai.phantoms.xray import Exposure, form_image

    for seed in range(4):
        anatomy = _anatomy_of_one_patient(seed)
        patient = anatomy.patient
        exposure = replace(
            Exposure.sample(np.random.default_rng(seed)), collimation=(0,) * 4, edge_enhancement=0.0
        )
        image = form_image(anatomy.soft, anatomy.bone, exposure, np.random.default_rng(seed))
        rows = slice(int(patient.thorax_top * SIZE), int((patient.thorax_top + 0.1) * SIZE))
        middle = SIZE // 2
        trachea = image[rows, middle - 2 : middle + 1].mean()
        beside = image[rows, [middle - 7, middle + 6]].mean()
        assert trachea < beside - 0.02, (seed, trachea, beside)


def test_lung_behind_the_heart_makes_it_greyer_than_the_mediastinum_above():
    """The lower lobes reach behind the heart, so its projected soft tissue is thinner than the
    mediastinum's, which has no lung behind it. Drawn as solid as the mediastinum, the heart read as white
    as it, and models trained on such phantoms found only its borders on a real radiograph."""
    for seed in range(4):
        anatomy = _anatomy_of_one_patient(seed)
        rows, columns = anatomy.shape
        v, u = np.mgrid[0:rows, 0:columns] / np.array([rows, columns], float)[:, None, None]
        off_spine = (np.abs(u - 0.5) > 0.08) & (np.abs(u - 0.5) < 0.15)
        heart_top = v[anatomy.heart].min()
        heart = anatomy.heart & off_spine & (v > heart_top + 0.12)
        mediastinum = anatomy.mediastinum & (np.abs(u - 0.5) > 0.035) & (v < heart_top - 0.02)
        assert heart.sum() > 50 and mediastinum.sum() > 20, seed
        assert anatomy.soft[heart].mean() < 0.9 * anatomy.soft[mediastinum].mean(), seed


def test_the_tone_scale_keeps_black_and_white_and_saturates_the_dense_end():
    """The vendors' S-shaped gradation maps 0 to 0 and 1 to 1, keeps the order of grey values, and flattens
    the densest values (heart, mediastinum, spine) together."""
    from cxrxai.phantoms.xray import _tone_scale

    ramp = np.linspace(0, 1, 101, dtype=np.float32)
    toned = _tone_scale(ramp, slope=8.0, centre=0.45)
    assert toned[0] == pytest.approx(0.0, abs=1e-6) and toned[-1] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(toned) > 0)
    assert toned[95] - toned[80] < (ramp[95] - ramp[80]) / 2  # the dense end compressed
    assert toned[50] - toned[40] > ramp[50] - ramp[40]  # the mid-tones (lungs) stretched


def test_a_pneumonia_with_consolidation_is_one_opacity():
    """A pneumonia patient's consolidation is the pneumonia's own opacity, not a second site elsewhere."""
    for seed in range(5):
        masks = _findings_of_one_patient(seed, ("Pneumonia", "Consolidation", "Lung Opacity"))
        consolidation, pneumonia = masks["Consolidation"], masks["Pneumonia"]
        assert consolidation.any() and (pneumonia >= consolidation).all(), seed
        assert pneumonia.sum() < 3 * consolidation.sum(), seed  # one region around it, not two far apart


def test_lung_lesions_are_a_solitary_one_or_metastases_in_both_lungs():
    """Half the lung lesions are one nodule or mass; the others are 3-10 round lesions over both lungs
    (blood-borne metastases), each in a lung and each one dense on the radiograph."""
    counts = []
    for seed in range(12):
        anatomy = _anatomy_of_one_patient(seed)
        before = anatomy.soft.copy()
        lesions = _findings_of_one_patient(seed, ("Lung Lesion",), anatomy)["Lung Lesion"]
        labels, count = ndimage.label(lesions, np.ones((3, 3)))
        counts.append(count)
        centres = np.round(ndimage.center_of_mass(lesions, labels, range(1, count + 1))).astype(int)
        assert all(anatomy.lungs[tuple(c)] for c in centres), seed
        for piece in range(1, count + 1):
            assert (anatomy.soft - before)[labels == piece].max() > 1.0, (seed, piece)
        if count >= 3:  # metastases: in both lungs
            sides = {bool(anatomy.left_lung[tuple(c)]) for c in centres}
            assert sides == {True, False}, seed
    assert 1 in counts and max(counts) >= 3, counts


def test_tight_collimation_brings_the_lungs_to_the_image_edges():
    """Some radiographs frame the chest tightly: the thorax reaches the image's side edges, the lungs span up
    to 0.82 of its height, and the lung bases stay on the image."""
    from cxrxai.phantoms.thorax import Patient

    patients = [Patient.sample(np.random.default_rng(seed)) for seed in range(300)]
    assert max(p.thorax_width for p in patients) > 0.97
    assert max(p.inspiration for p in patients) > 0.76
    assert min(p.thorax_top for p in patients) < 0.05
    assert max(p.thorax_top + p.inspiration for p in patients) <= 0.97


def test_atelectasis_beside_an_effusion_is_compressive():
    """With an effusion the collapsed lung lies just above the fluid, on its side, never under it."""
    for seed in range(5):
        masks = _findings_of_one_patient(seed, ("Atelectasis", "Pleural Effusion", "Lung Opacity"))
        collapsed, fluid = masks["Atelectasis"], masks["Pleural Effusion"]
        assert collapsed.any() and not (collapsed & fluid).any(), seed
        rows, columns = np.nonzero(collapsed)
        same_side = (np.arange(SIZE) < SIZE / 2) == (columns.mean() < SIZE / 2)
        fluid_rows = np.nonzero(fluid & same_side)[0]
        assert len(fluid_rows), seed  # an effusion on the collapsed lung's side
        assert rows.max() <= fluid_rows.max() and np.median(rows) < np.median(fluid_rows), seed


@needs_dciodvfy
def test_cli_writes_chexpert_layout_dicom_and_png(tmp_path, capsys):
    out = tmp_path / "set"
    assert (
        main(
            [
                "phantoms",
                "--count",
                "6",
                "--out",
                str(out),
                "--seed",
                "2",
                "--format",
                "both",
                "--size",
                "128",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    with open(out / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == CHEXPERT_COLUMNS and len(rows) == 6
    for row in rows:
        assert all(row[name] in ("1.0", "0.0", "-1.0", "") for name in FINDINGS)
    truth = json.loads((out / "ground_truth.json").read_text())
    for record in truth:
        png = read_radiograph(out / record["files"]["png"])
        dicom = read_radiograph(out / record["files"]["dicom"])
        assert png.pixels.shape == dicom.pixels.shape
        assert (
            np.corrcoef(png.pixels.ravel(), dicom.pixels.ravel())[0, 1] > 0.99
        )  # same image, any photometric
        errors = [e for e in dciodvfy_errors(out / record["files"]["dicom"])]
        assert errors == [], errors
        for name, path in record["masks"].items():
            assert (out / path).is_file(), name
    assert "6 phantoms" in capsys.readouterr().out


def test_cli_refuses_bad_counts(tmp_path, capsys):
    assert main(["phantoms", "--count", "0", "--out", str(tmp_path)]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_shape_model_samples_real_looking_lungs():
    from cxrxai.phantoms.shape_prior import LANDMARKS, load_model, sample_lungs

    model = load_model()
    assert int(model["count"]) > 400 and model["mean"].shape == (4 * LANDMARKS,)
    right, left = sample_lungs(np.random.default_rng(0))
    assert right.shape == left.shape == (LANDMARKS, 2)
    # thorax coordinates: the right lung (image left) lies left of the left lung, both within the thorax box
    assert right[:, 1].mean() < 0.5 < left[:, 1].mean()
    assert min(right.min(), left.min()) >= -0.05 and max(right.max(), left.max()) <= 1.05
    # the first landmark is the apex, the highest point of each lung
    assert right[0, 0] == pytest.approx(right[:, 0].min(), abs=0.02)


def test_shape_vector_reads_a_two_lung_mask():
    from cxrxai.phantoms.shape_prior import shape_vector

    mask = np.zeros((100, 100), bool)
    mask[10:90, 10:40] = True
    mask[15:85, 60:90] = True
    vector = shape_vector(mask)
    assert vector is not None and vector.shape == (256,)
    assert shape_vector(np.zeros((50, 50), bool)) is None  # a lateral view has no lung pair


def test_positioning_moves_image_and_masks_together():
    from cxrxai.phantoms.generator import Positioning

    mask = np.zeros((100, 80), bool)
    mask[20:40, 10:30] = True
    np.testing.assert_array_equal(Positioning((0.0, 0.0), 0.0, (100, 80)).apply(mask), mask)
    moved = Positioning((0.1, 0.125), 0.0, (100, 80)).apply(mask)
    np.testing.assert_array_equal(np.argwhere(moved).min(axis=0), [30, 20])  # 10 rows down, 10 columns right
    values = mask.astype(np.float32)
    np.testing.assert_allclose(
        Positioning((0.1, 0.125), 0.0, (100, 80)).apply(values), moved.astype(np.float32)
    )
