"""One phantom: patient, findings, anatomy, image, masks and labels, reproducible from (seed, index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cxrxai.cardiothoracic import cardiothoracic_ratio
from cxrxai.phantoms.findings import adjust_patient, render_findings, sample_findings
from cxrxai.phantoms.thorax import Patient, build_anatomy
from cxrxai.phantoms.xray import Exposure, form_image


@dataclass(frozen=True)
class Positioning:
    """The patient's place in the field: an in-plane rotation about the image centre and a shift, applied
    to the projected thickness maps and to every mask alike, so the ground truth stays aligned."""

    shift: tuple[float, float]  # (rows, columns) as fractions of the image size
    rotation: float  # degrees
    shape: tuple[int, int]

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Output x samples the input at R (x - c) + c - shift: content moves by shift, turns by angle."""
        rows, columns = self.shape
        angle = np.deg2rad(self.rotation)
        rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = np.array([rows / 2, columns / 2])
        shift = np.array([self.shift[0] * rows, self.shift[1] * columns])
        offset = centre - rotate @ centre - shift
        if array.dtype == bool:
            return ndimage.affine_transform(array.astype(np.uint8), rotate, offset=offset, order=0).astype(
                bool
            )
        return ndimage.affine_transform(array, rotate, offset=offset, order=1, mode="nearest").astype(
            np.float32
        )


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
    masks = {
        "Right Lung": anatomy.right_lung,
        "Left Lung": anatomy.left_lung,
        "Heart": anatomy.heart,
        **findings.masks,
    }
    position = Positioning(patient.shift, patient.rotation, shape)
    masks = {name: position.apply(mask) for name, mask in masks.items()}
    image = form_image(position.apply(soft), position.apply(anatomy.bone), Exposure.sample(rng), rng)
    return Phantom(
        image=image,
        labels=findings.labels(),
        masks=masks,
        patient=patient,
        ctr=cardiothoracic_ratio(masks["Heart"], masks["Right Lung"] | masks["Left Lung"]),
    )
