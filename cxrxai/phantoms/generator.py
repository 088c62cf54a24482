"""One phantom: patient, findings, anatomy, image, masks and labels, reproducible from (seed, index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrxai.anatomy import cardiothoracic_ratio
from cxrxai.phantoms.anatomy import Patient, build_anatomy
from cxrxai.phantoms.findings import adjust_patient, render_findings, sample_findings
from cxrxai.phantoms.xray import Exposure, form_image


@dataclass
class Phantom:
    image: np.ndarray  # rows x columns in [0, 1], bright = dense
    labels: dict[str, int]  # 1 present / 0 absent, all 14 findings
    masks: dict[str, np.ndarray]  # anatomy ("Right Lung", "Left Lung", "Heart") and localised findings
    patient: Patient
    ctr: float | None


def make_phantom(seed: int, index: int, rows: int = 512) -> Phantom:
    """Phantom number `index` of the set made with `seed`; the same pair always gives the same image."""
    rng = np.random.default_rng([seed, index])
    aspect = float(rng.uniform(0.82, 1.0))
    shape = (rows, int(round(rows * aspect)) // 2 * 2)
    present = sample_findings(rng)
    patient = adjust_patient(Patient.sample(rng), present, rng)
    anatomy = build_anatomy(patient, shape, rng)
    findings = render_findings(anatomy, present, rng)
    soft = np.maximum(anatomy.soft + (anatomy.vessels if anatomy.vessels is not None else 0.0), 0.0)
    image = form_image(soft, anatomy.bone, Exposure.sample(rng), rng)
    masks = {
        "Right Lung": anatomy.right_lung,
        "Left Lung": anatomy.left_lung,
        "Heart": anatomy.heart,
        **findings.masks,
    }
    return Phantom(
        image=image,
        labels=findings.labels(),
        masks=masks,
        patient=patient,
        ctr=cardiothoracic_ratio(anatomy.heart, anatomy.lungs),
    )
