"""X-ray image formation and vendor post-processing.

Beer-Lambert attenuation of the projected thicknesses, a wide scatter blur, quantum (Poisson) and
electronic detector noise, the log transform, then one of several vendor looks (contrast curve, unsharp
masking / edge enhancement, latitude compression, an S-shaped tone scale), and collimation. Output:
display values in [0, 1], bright = dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

MU_SOFT = 0.20  # 1/cm, water-equivalent at a ~70 keV effective energy
MU_BONE = 0.48
MU_AIR = 0.0


@dataclass(frozen=True)
class Exposure:
    photons: float  # quanta per pixel reaching the detector through the median of the body (AEC target)
    scatter_fraction: float
    scatter_sigma: float  # fraction of the image height
    electronic_noise: float
    gamma: float  # vendor contrast curve
    # CR / DR gradation (Fuji's GA / GC, Agfa's and Carestream's tone scales): an S-shaped curve of this
    # slope (0 = none) that saturates the densest parts, so heart, mediastinum and spine can read nearly
    # white together while the lungs keep their contrast
    gradation_slope: float
    gradation_centre: float
    edge_enhancement: float
    # dynamic range compression (Agfa MUSICA, Fuji DRC, ...): a share of the large-scale density is
    # removed, so lungs read grey beside a visible mediastinum instead of black holes in a white body
    latitude_compression: float
    collimation: tuple[float, float, float, float]  # top, bottom, left, right margins (fractions)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Exposure:
        margins = (
            tuple(float(x) for x in rng.uniform(0.0, 0.04, size=4))
            if rng.random() < 0.5
            else (0.0, 0.0, 0.0, 0.0)
        )
        return cls(
            photons=float(rng.uniform(3e3, 2e4)),
            scatter_fraction=float(rng.uniform(0.15, 0.45)),
            scatter_sigma=float(rng.uniform(0.04, 0.1)),
            electronic_noise=float(rng.uniform(0.002, 0.01)),
            gamma=float(rng.uniform(0.8, 1.3)),
            gradation_slope=float(rng.uniform(3.0, 9.0)) if rng.random() < 0.6 else 0.0,
            gradation_centre=float(rng.uniform(0.35, 0.6)),
            edge_enhancement=float(rng.uniform(0.0, 0.8)),
            latitude_compression=float(rng.uniform(0.0, 0.7)),
            collimation=margins,  # type: ignore[arg-type]
        )


def form_image(
    soft: np.ndarray, bone: np.ndarray, exposure: Exposure, rng: np.random.Generator
) -> np.ndarray:
    """Display image in [0, 1] from projected thicknesses (cm)."""
    rows, columns = soft.shape
    attenuation = MU_SOFT * soft + MU_BONE * bone
    primary = np.exp(-attenuation)
    scatter = (
        ndimage.gaussian_filter(primary, sigma=exposure.scatter_sigma * rows) * exposure.scatter_fraction
    )
    # automatic exposure control: the tube output is set so the median body pixel gets `photons` quanta
    reference = float(np.median(primary[primary < 0.9])) if np.any(primary < 0.9) else 1.0
    incident = exposure.photons / max(reference, 1e-6)
    expected = (primary + scatter) * incident
    counts = rng.poisson(np.maximum(expected, 0)).astype(np.float32)
    counts += rng.normal(0, exposure.electronic_noise * exposure.photons, size=counts.shape).astype(
        np.float32
    )
    signal = -np.log(np.clip(counts, 1.0, None) / incident)  # log transform: bright = dense
    if exposure.latitude_compression > 0:
        large_scale = ndimage.gaussian_filter(signal, sigma=rows * 0.08)
        signal = signal - exposure.latitude_compression * (large_scale - float(large_scale.mean()))
    lo, hi = np.percentile(signal, (0.5, 99.5))
    image = np.clip((signal - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    if exposure.edge_enhancement > 0:
        blurred = ndimage.gaussian_filter(image, sigma=rows / 150)
        image = np.clip(image + exposure.edge_enhancement * (image - blurred), 0, 1)
    image = image**exposure.gamma
    if exposure.gradation_slope > 0:
        image = _tone_scale(image, exposure.gradation_slope, exposure.gradation_centre)
    top, bottom, left, right = exposure.collimation
    collimated = np.zeros_like(image, dtype=bool)
    collimated[: int(top * rows), :] = True
    collimated[rows - int(bottom * rows) :, :] = True
    collimated[:, : int(left * columns)] = True
    collimated[:, columns - int(right * columns) :] = True
    image[collimated] = 1.0  # unexposed field edges read as dense (white) on a processed radiograph
    return image.astype(np.float32)


def _tone_scale(image: np.ndarray, slope: float, centre: float) -> np.ndarray:
    """A logistic tone curve through `centre` with `slope`, rescaled to map [0, 1] onto [0, 1]."""
    ends = special.expit(slope * (np.array([0.0, 1.0]) - centre))
    curve = special.expit(slope * (image - centre))
    return ((curve - ends[0]) / (ends[1] - ends[0])).astype(np.float32)
