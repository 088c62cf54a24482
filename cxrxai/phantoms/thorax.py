"""Chest anatomy of one synthetic patient, as projected thickness maps (cm) and ground-truth masks.

PA view conventions: the patient's right is on the image left; rows run head to feet. Coordinates below
are fractions of the image height (v) and width (u). Lung outlines are real shapes from a statistical
shape model (`shape_prior`); the rest is built from anatomical proportions.
Tissues are projected through an elliptical chest: a structure's projected thickness is largest at its
centre line and falls off like the chord of an ellipse, which is what gives lungs, heart and body their
smooth radiographic edges. Why not a 3-D voxel phantom: 2-D chord projections are ~100x cheaper and give
the same radiographic cues the 14 observations depend on (silhouettes, densities, lines, angles).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.draw import polygon as fill_polygon

from cxrxai.phantoms.shape_prior import sample_lungs


@dataclass(frozen=True)
class Patient:
    """Sampled patient and positioning variability."""

    thorax_width: float  # fraction of image width between outer rib margins
    thorax_top: float  # lung apex level (fraction of height)
    inspiration: float  # lung height as a fraction of image height
    heart_width: float  # fraction of thorax width (cardiothoracic ratio before findings)
    heart_height: float  # fraction of image height from the diaphragm below its middle to its top
    mediastinum_width: float  # fraction of image width at the aortic-knob level
    shift: tuple[float, float]  # (dv, du) position of the patient in the field
    rotation: float  # degrees, in-plane
    body_depth: float  # antero-posterior chest thickness, cm
    breasts: bool
    ap: bool  # AP projection (magnified heart) instead of PA

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Patient:
        # collimation to the chest is often tight: the outer rib margins reach the image's edges, the apices
        # lie 3 % below the top, and at full inspiration the lungs span up to 0.82 of the height
        thorax_width = float(rng.uniform(0.7, 1.0))
        thorax_top = float(rng.uniform(0.03, 0.15))
        inspiration = float(rng.uniform(0.52, min(0.82, 0.97 - thorax_top)))
        return cls(
            thorax_width=thorax_width,
            thorax_top=thorax_top,
            inspiration=inspiration,
            heart_width=float(rng.uniform(0.36, 0.47)),
            heart_height=float(rng.uniform(0.2, 0.25)),
            mediastinum_width=float(rng.uniform(0.09, 0.12)),
            shift=(float(rng.normal(0, 0.015)), float(rng.normal(0, 0.02))),
            rotation=float(rng.normal(0, 2.0)),
            body_depth=float(rng.uniform(18, 30)),
            breasts=bool(rng.random() < 0.45),
            ap=bool(rng.random() < 0.2),
        )


@dataclass
class Anatomy:
    """Projected thicknesses (cm) per tissue and the masks derived from the same geometry."""

    shape: tuple[int, int]
    soft: np.ndarray  # soft tissue / water-equivalent thickness
    bone: np.ndarray
    air: np.ndarray  # air thickness in the lungs, airways and behind the heart (replaces soft tissue)
    right_lung: np.ndarray  # bool, the visible lung fields (heart excluded)
    left_lung: np.ndarray
    heart: np.ndarray
    mediastinum: np.ndarray
    vessels: np.ndarray | None = None  # vessel markings (cm), added to `soft` when the image is formed
    # each posterior rib's centre line, (N, 2) rows, columns
    ribs: list[np.ndarray] = field(default_factory=list)
    anterior_ribs: list[np.ndarray] = field(default_factory=list)  # their anterior arcs, lateral end first
    hila: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.0), (0.0, 0.0))
    patient: Patient | None = None

    @property
    def lungs(self) -> np.ndarray:
        return self.right_lung | self.left_lung


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = shape
    v, u = np.mgrid[0:rows, 0:columns].astype(np.float32)
    return (v + 0.5) / rows, (u + 0.5) / columns


def _chord(mask: np.ndarray, depth: float) -> np.ndarray:
    """Projected thickness of a convex-ish body: depth x sqrt(1 - (1 - d/dmax)^2), d: distance to edge."""
    distance = ndimage.distance_transform_edt(mask).astype(np.float32)
    peak = float(distance.max()) or 1.0
    x = np.clip(distance / peak, 0, 1)
    return depth * np.sqrt(np.clip(1 - (1 - x) ** 2, 0, 1)).astype(np.float32)


def _heart_columns(width: float) -> tuple[float, float]:
    """The heart's extent across the radiograph (fractions of the width): a third of its `width` right of the
    midline, two thirds left."""
    return 0.5 - 0.34 * width, 0.5 + 0.66 * width


def _cardiac_silhouette(
    v: np.ndarray, u: np.ndarray, dome: np.ndarray, width: float, height: float
) -> np.ndarray:
    """The heart on a PA radiograph, standing on the diaphragm across its columns (`_heart_columns`). The
    right border (right atrium) bulges most a little below the middle and meets the right hemidiaphragm at the
    cardiophrenic angle; the left border (left ventricle) swings out to the apex just above the left
    hemidiaphragm, so the heart points its apex down to the patient's left. Its top, `height` (a fraction
    of the image height) above the diaphragm, narrows into the mediastinum; its inferior border is the
    diaphragm's upper surface."""
    right_edge, left_edge = _heart_columns(width)
    right_width, left_width = 0.5 - right_edge, left_edge - 0.5
    span = (u[0] > right_edge) & (u[0] < left_edge)
    base = float(np.median(dome[0, span])) if span.any() else 0.85
    s = (v - (base - height)) / height  # 0 at the top, 1 on the diaphragm below the heart's middle

    def bulge(peak: float, below: float) -> np.ndarray:
        reach = np.where(s <= peak, (s - peak) / peak, (np.minimum(s, 1.0) - peak) / below)
        return np.sqrt(np.clip(1 - reach**2, 0, 1))

    inside = (u > 0.5 - right_width * bulge(0.6, 0.7)) & (u < 0.5 + left_width * bulge(0.85, 0.35))
    return inside & (s > 0) & (v < dome)


def _diaphragm(right: np.ndarray, left: np.ndarray, heart: tuple[float, float]) -> np.ndarray:
    """The hemidiaphragms' upper surface (1 x columns, fractions of the height): each lung's lower border,
    followed from the chest wall inwards to the cardiophrenic angle, then bridged straight under the heart
    (whose columns, fractions of the width, are `heart`) and carried flat out to the chest wall. The
    abdomen's density starts there, so the lung fields end on a dome, not on a level line with aerated
    lung beneath it.

    The cardiophrenic angle is where the lower border meets the heart's columns or turns steeply up the
    heart's border (steeper than 60 degrees over 2 % of the width), whichever comes first: both are
    measured in fractions of the image, so the surface is the same at every image size; stopping there
    keeps the bridge from rising under the heart's middle and notching the heart's ground truth."""
    rows, columns = right.shape
    window = max(int(round(columns * 0.02)), 1)
    centres = (np.arange(columns) + 0.5) / columns
    beside_heart = (centres <= heart[0]) | (centres >= heart[1])
    known: list[tuple[int, int]] = []
    for lung, inwards in ((right, 1), (left, -1)):
        order = np.flatnonzero(lung.any(axis=0) & beside_heart)[::inwards]  # from the chest wall inwards
        if len(order) == 0:
            continue
        lowest = rows - np.argmax(lung[::-1, order], axis=0)  # the first row below the lung
        rise = lowest[:-window] - lowest[window:]  # rows climbed over `window` columns inwards
        steep = np.flatnonzero(rise > np.tan(np.deg2rad(60)) * window * rows / columns)
        stop = int(steep[0]) + 1 if len(steep) else len(order)
        known += zip(order[:stop].tolist(), lowest[:stop].tolist(), strict=True)
    if not known:
        return np.full((1, columns), 0.85, np.float32)
    known.sort()
    surface = np.interp(np.arange(columns), *np.array(known, dtype=np.float64).T)
    surface = np.maximum(ndimage.gaussian_filter1d(surface, sigma=columns * 0.01), surface)
    return (surface / rows)[None, :].astype(np.float32)


def _distance_to_lines(lines: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Each pixel's distance (pixels) to the nearest of the centre lines ((N, 2) rows, columns)."""
    on_line = np.zeros(shape, bool)
    for line in lines:
        rr = np.clip(np.round(line[:, 0]).astype(int), 0, shape[0] - 1)
        cc = np.clip(np.round(line[:, 1]).astype(int), 0, shape[1] - 1)
        on_line[rr, cc] = True
    return ndimage.distance_transform_edt(~on_line).astype(np.float32)


def _polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """points: (N, 2) in (v, u) fractions."""
    mask = np.zeros(shape, bool)
    rr, cc = fill_polygon(points[:, 0] * shape[0], points[:, 1] * shape[1], shape)
    mask[rr, cc] = True
    return mask


def lung_outlines(p: Patient, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Right and left lung outlines in image fractions (v, u): real lung shapes from the statistical
    shape model (shape_prior), placed in this patient's thorax (apex level, height, width)."""
    right, left = sample_lungs(rng)
    placed = []
    for outline in (right, left):
        v = p.thorax_top + outline[:, 0] * p.inspiration
        u = 0.5 + (outline[:, 1] - 0.5) * p.thorax_width
        placed.append(np.stack([v, u], axis=1))
    return placed[0], placed[1]


def build_anatomy(p: Patient, shape: tuple[int, int], rng: np.random.Generator) -> Anatomy:
    """All normal anatomy for patient `p` on an image of `shape` (rows, columns)."""
    v, u = _grid(shape)
    soft = np.zeros(shape, np.float32)
    bone = np.zeros(shape, np.float32)
    # body: a near-cylinder (thickness varies across, barely down), neck above; below the hemidiaphragms
    # the liver and abdomen are the densest soft tissue on the radiograph
    half_body = p.thorax_width / 2 + 0.1
    body = ((u - 0.5) / half_body) ** 2 + ((v - 0.62) / 0.95) ** 2 <= 1.0
    body |= (np.abs(u - 0.5) < 0.09) & (v < 0.2)  # neck
    across = np.sqrt(np.clip(1 - ((u - 0.5) / half_body) ** 2, 0, 1))
    soft += (p.body_depth * across * body).astype(np.float32)
    right_outline, left_outline = lung_outlines(p, rng)
    right = _polygon_mask(right_outline, shape)
    left = _polygon_mask(left_outline, shape)
    # heart: left of the midline (image right), its apex on the left hemidiaphragm
    magnify = 1.12 if p.ap else 1.0
    heart_width = p.heart_width * p.thorax_width * magnify
    dome = _diaphragm(right, left, _heart_columns(heart_width))
    soft += (4.0 * across * body / (1 + np.exp(-(v - dome) * shape[0] / 6))).astype(np.float32)
    heart = _cardiac_silhouette(v, u, dome, heart_width, p.heart_height * magnify)
    heart_top = float(v[heart.any(axis=1), 0].min()) if heart.any() else p.thorax_top + p.inspiration * 0.6
    # mediastinum: a band between the lungs, wider at the top, with the aortic knob on the left
    knob_v = p.thorax_top + 0.1
    mediastinum = (
        (np.abs(u - 0.5) < p.mediastinum_width / 2) & (v > p.thorax_top - 0.04) & (v < heart_top + 0.04)
    )
    mediastinum |= ((u - (0.5 + p.mediastinum_width / 2)) / 0.03) ** 2 + ((v - knob_v) / 0.03) ** 2 <= 1
    # the lung fields end on the diaphragm: under the heart's bridge, the tips of the lung outlines' cardiac
    # notches that reach below it are abdomen
    above_diaphragm = v < dome
    right &= ~heart & ~mediastinum & above_diaphragm
    left &= ~heart & ~mediastinum & above_diaphragm
    air = _chord(right, p.body_depth * 0.55) + _chord(left, p.body_depth * 0.55)
    hila = (
        (p.thorax_top + p.inspiration * 0.45, 0.5 - p.mediastinum_width / 2 - 0.03),
        (p.thorax_top + p.inspiration * 0.42, 0.5 + p.mediastinum_width / 2 + 0.03),
    )
    air += _airways(v, u, p, hila)
    # the lower lobes reach behind the heart to the spine: that retrocardiac lung makes the heart grey, not
    # white, on a real PA radiograph, with the spine and faint vessels showing through it, so the heart is
    # known by its borders and place
    behind_heart = float(rng.uniform(0.15, 0.4)) * p.body_depth * 0.55
    off_spine = np.clip((np.abs(u - 0.5) - 0.03) / 0.05, 0, 1)
    below_top = np.clip((v - heart_top) / 0.1, 0, 1)
    air += (heart * behind_heart * off_spine * below_top).astype(np.float32)
    # heart and mediastinum are water-dense like the rest of the body: they show only as the absence of
    # lung air, which is how their silhouettes appear on a real radiograph
    soft = np.maximum(soft - air, 0)
    # spine: vertebral bodies of cancellous bone whose end plates and discs show only faintly, with the
    # pedicles' cortical rings either side; behind the mediastinum and heart it reads as a subtle band, and
    # the trachea's air outweighs it (a lucent column over the upper thoracic spine, as on every PA
    # radiograph)
    spine = np.abs(u - 0.5) < 0.032
    level = v / 0.045  # one vertebra per 4.5 % of the height
    vertebra = 0.5 + 0.5 * np.cos(2 * np.pi * level)
    cylinder = np.sqrt(np.clip(1 - ((u - 0.5) / 0.032) ** 2, 0, 1))  # a vertebral body's chord
    bone += spine * (0.35 + 0.08 * vertebra) * cylinder
    pedicle_ring = np.abs(
        np.hypot((np.abs(u - 0.5) - 0.024) / 0.008, (level - np.round(level) - 0.15) * 0.045 / 0.012) - 1
    )
    bone += 0.25 * np.exp(-((pedicle_ring / 0.35) ** 2)) * (v > p.thorax_top - 0.05)
    # ribs: posterior arcs from the spine, descending laterally, that turn at the chest wall into anterior
    # arcs descending medially to the costal cartilages (radiolucent, so an anterior rib ends short of the
    # sternum). The two sets cross over both lungs, as on every PA radiograph: a rib's slope says nothing
    # about which lung it lies over, so a model cannot take the side from it
    ribs, anterior_ribs = [], []
    s = np.linspace(0, 1, 60)
    cartilage = float(rng.uniform(0.08, 0.12))  # costochondral junctions' distance from the midline
    for side in (-1, 1):
        for k in range(10):
            start_v = p.thorax_top - 0.02 + k * p.inspiration * 0.095
            rib_u = 0.5 + side * (0.03 + s * (p.thorax_width / 2 + 0.02))
            rib_v = start_v + 0.04 * s + 0.12 * s**2 - 0.02 * np.sin(np.pi * s)
            ribs.append(np.stack([rib_v * shape[0], rib_u * shape[1]], 1))
            if k < 8:  # the lower ribs' anterior ends join the costal margin below the diaphragm
                reach = p.thorax_width / 2 + 0.05 - cartilage
                front_u = 0.5 + side * (cartilage + reach * (1 - s))
                drop = 0.06 + 0.1 * p.inspiration  # about two rib spaces, steepest at the chest wall
                front_v = rib_v[-1] + drop * (0.6 * s + 0.4 * (1 - (1 - s) ** 2))
                anterior_ribs.append(np.stack([front_v * shape[0], front_u * shape[1]], 1))
    rib_half = max(shape[0] * 0.009, 1.0)
    rib_distance = _distance_to_lines(ribs, shape)
    rib_profile = np.clip(1 - (rib_distance / rib_half) ** 2, 0, 1)
    cortex = np.exp(-(((rib_distance - rib_half * 0.8) / (rib_half * 0.25)) ** 2))  # bright cortical edges
    # about 1 cm of cancellous bone in a cortical shell: ribs stand out against aerated lung
    bone += (0.8 * rib_profile + 0.5 * cortex * (rib_distance < rib_half)) * body
    # anterior arcs lie far from the detector: magnified, unsharp and fainter than the posterior ones
    front_distance = _distance_to_lines(anterior_ribs, shape)
    front_profile = np.clip(1 - (front_distance / (rib_half * 1.2)) ** 2, 0, 1)
    bone += 0.6 * ndimage.gaussian_filter(front_profile, sigma=rib_half * 0.3) * body
    # clavicles: S-shaped bands from the sternal notch to the shoulders
    for side in (-1, 1):
        s = np.linspace(0, 1, 50)
        cl_u = 0.5 + side * (0.04 + (p.thorax_width / 2 - 0.05) * s)
        cl_v = p.thorax_top + 0.02 - 0.05 * s + 0.02 * np.sin(2 * np.pi * s)
        line = np.zeros(shape, bool)
        line[
            np.clip((cl_v * shape[0]).astype(int), 0, shape[0] - 1),
            np.clip((cl_u * shape[1]).astype(int), 0, shape[1] - 1),
        ] = True
        bone += 1.1 * (ndimage.distance_transform_edt(np.logical_not(line)) < shape[0] * 0.012)
    # scapulae: faint plates over the lateral upper lung fields
    for side in (-1, 1):
        scap = ((u - (0.5 + side * (p.thorax_width / 2 - 0.02))) / 0.07) ** 2 + (
            (v - (p.thorax_top + 0.14)) / 0.12
        ) ** 2 <= 1
        bone += 0.35 * scap
    if p.breasts:
        # lateral over the lower zones: a sharp inferior border, the upper edge fading into the chest wall
        centre_v = p.thorax_top + p.inspiration * 0.8
        for side in (-1, 1):
            breast = ((u - (0.5 + side * 0.25)) / 0.17) ** 2 + ((v - centre_v) / 0.12) ** 2 <= 1
            fade = np.clip((v - (centre_v - 0.12)) / 0.24, 0, 1)
            soft += (_chord(breast, 3.0) * fade).astype(np.float32)
    anatomy = Anatomy(
        shape,
        soft,
        bone.astype(np.float32),
        air,
        right,
        left,
        heart,
        mediastinum,
        None,
        ribs,
        anterior_ribs,
        hila,
        p,
    )
    anatomy.vessels = vessel_markings(anatomy, rng)
    return anatomy


def _airways(v: np.ndarray, u: np.ndarray, p: Patient, hila: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Air in the trachea and main bronchi (cm): a lucent column down the upper mediastinum, pushed a
    little to the patient's right by the aortic arch, that divides at the carina towards the hila."""
    carina_v = p.thorax_top + p.inspiration * 0.3
    trachea_u = 0.5 - 0.006
    tubes = [(np.array([0.0, carina_v]), np.array([trachea_u, trachea_u]), 0.022, 2.5)]
    for hilum_v, hilum_u in hila:  # main bronchi: half the trachea's calibre, to each hilum
        tubes.append((np.array([carina_v, hilum_v]), np.array([trachea_u, hilum_u]), 0.012, 1.2))
    air = np.zeros(v.shape, np.float32)
    for tube_v, tube_u, radius, depth in tubes:
        # distance from each pixel to the segment, in image-width units (the images are near square)
        direction = np.array([tube_v[1] - tube_v[0], tube_u[1] - tube_u[0]])
        t = np.clip(
            ((v - tube_v[0]) * direction[0] + (u - tube_u[0]) * direction[1]) / float(direction @ direction),
            0,
            1,
        )
        distance = np.hypot(v - (tube_v[0] + t * direction[0]), u - (tube_u[0] + t * direction[1]))
        air = np.maximum(air, depth * np.sqrt(np.clip(1 - (distance / radius) ** 2, 0, 1)))
    return air


def vessel_markings(anatomy: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Branching vessel markings from each hilum, tapering towards the periphery (they are absent beyond a
    pneumothorax's pleural line, one of its radiographic signs)."""
    rows, columns = anatomy.shape
    lungs = anatomy.lungs
    markings = np.zeros(anatomy.shape, np.float32)
    for hilum in anatomy.hila:
        stack = [(hilum[0] * rows, hilum[1] * columns, float(rng.uniform(0, 2 * np.pi)), rows * 0.12, 1.0)]
        for _ in range(6):
            angle = float(rng.uniform(0, 2 * np.pi))
            stack.append((hilum[0] * rows, hilum[1] * columns, angle, rows * 0.1, 1.0))
        while stack:
            r, c, angle, length, width = stack.pop()
            if length < rows * 0.015 or width < 0.2:
                continue
            steps = max(int(length), 2)
            rr = r + np.sin(angle) * np.arange(steps)
            cc = c + np.cos(angle) * np.arange(steps)
            inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < columns)
            markings[rr[inside].astype(int), cc[inside].astype(int)] += width
            end_r, end_c = rr[-1], cc[-1]
            for turn in (-0.45, 0.45):
                stack.append(
                    (end_r, end_c, angle + turn + float(rng.normal(0, 0.2)), length * 0.72, width * 0.7)
                )
    # behind the heart the lower lobes' vessels show faintly, in proportion to the air around them
    behind_heart = np.where(anatomy.heart, anatomy.air, 0.0)
    seen = np.maximum(lungs, 0.5 * behind_heart / max(float(behind_heart.max()), 1e-6))
    markings = ndimage.gaussian_filter(markings, sigma=max(rows / 400, 0.6)) * 1.6 * seen
    v, u = _grid(anatomy.shape)
    for hilum_v, hilum_u in anatomy.hila:
        # the pulmonary arteries and veins at the lung root: hilar shadows over the medial lung
        lateral = hilum_u + 0.02 * np.sign(hilum_u - 0.5)
        markings += 2.5 * np.exp(-(((v - hilum_v) / 0.05) ** 2 + ((u - lateral) / 0.03) ** 2))
    return markings.astype(np.float32)
