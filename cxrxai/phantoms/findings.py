"""The 14 observations: which are present (with realistic co-occurrence), how each looks on the radiograph,
and where it is (a ground-truth mask for every localised finding).

Mechanisms add or remove water-equivalent thickness (or bone / metal) in the anatomy's projected maps:
- Cardiomegaly / Enlarged Cardiomediastinum: the heart / mediastinum are drawn larger (chosen before the
  anatomy is built); Cardiomegaly means a true cardiothoracic ratio above 0.5.
- Lung Lesion: a solitary nodule or mass (sphere projection) or, in half the cases, metastases: 3-10
  nodules and masses over both lungs, placed by lung area, so most in the wider lower zones as blood-borne
  metastases are. Consolidation: a dense homogeneous region with air bronchograms. Pneumonia: patchy,
  inhomogeneous airspace opacity; when the image also has Consolidation, that consolidation is the
  pneumonia's own (the patchy opacity surrounds it, and the Pneumonia mask holds both), as on a radiograph of
  lobar pneumonia. Edema: bilateral perihilar haze with Kerley B lines. Atelectasis: a plate-like band at
  a lung base (with an effusion, compressive: just above the fluid on its side) and, in half the cases, a
  segmental lower-lobe collapse (a triangle from the hilum to the medial base). Lung Opacity: any of
  these, or a faint patchy opacity on its own (the CheXpert hierarchy).
- Pneumothorax: a visceral pleural line, lucent space outside it with no vessel markings.
- Pleural Effusion: dependent fluid with a meniscus that blunts the costophrenic angle.
- Pleural Other: pleural thickening / plaques along the chest wall.
- Fracture: a displaced break (a lucent line, the outer fragment stepped off) on a rib's axillary arc
  where it crosses aerated lung, often with a healing callus; in half the cases the next one or two
  ribs are broken too, at about the same lateral position, as rib fractures from one blow usually are.
- Support Devices: endotracheal tube, central line, pacemaker with lead, nasogastric tube.
No Finding is present exactly when none of the other 13 is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.draw import polygon as fill_polygon

from cxrxai.labels import FINDINGS
from cxrxai.phantoms.thorax import Anatomy, Patient

BASE_RATE = {
    "Enlarged Cardiomediastinum": 0.08,
    "Cardiomegaly": 0.15,
    "Lung Lesion": 0.1,
    "Edema": 0.1,
    "Consolidation": 0.1,
    "Pneumonia": 0.08,
    "Atelectasis": 0.12,
    "Pneumothorax": 0.08,
    "Pleural Effusion": 0.15,
    "Pleural Other": 0.05,
    "Fracture": 0.06,
    "Support Devices": 0.15,
    "Lung Opacity": 0.05,  # on its own, besides the opacity-type findings that imply it
}
OPACITY_TYPES = ("Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis")
# (if present, then also) with probability: heart failure, infection and ICU patterns
CO_OCCURRENCE = (
    ("Edema", "Cardiomegaly", 0.5),
    ("Edema", "Pleural Effusion", 0.5),
    ("Pneumonia", "Consolidation", 0.6),
    ("Pleural Effusion", "Atelectasis", 0.3),
    ("Edema", "Support Devices", 0.3),
)


@dataclass
class FindingSet:
    present: dict[str, bool]
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def labels(self) -> dict[str, int]:
        return {name: int(self.present[name]) for name in FINDINGS}


def sample_findings(rng: np.random.Generator, normal_fraction: float = 0.3) -> dict[str, bool]:
    """Which observations are present; about `normal_fraction` of images have none."""
    present = {name: False for name in FINDINGS}
    if rng.random() >= normal_fraction:
        for name, rate in BASE_RATE.items():
            present[name] = bool(rng.random() < rate * 1.6)
        for cause, effect, probability in CO_OCCURRENCE:
            if present[cause] and rng.random() < probability:
                present[effect] = True
    if any(present[name] for name in OPACITY_TYPES):
        present["Lung Opacity"] = True
    present["No Finding"] = not any(v for k, v in present.items() if k != "No Finding")
    return present


def adjust_patient(patient: Patient, present: dict[str, bool], rng: np.random.Generator) -> Patient:
    """Findings that change the anatomy itself are applied to the patient before it is built."""
    changes: dict[str, float] = {}
    if present["Cardiomegaly"]:
        changes["heart_width"] = float(rng.uniform(0.53, 0.66))
    if present["Enlarged Cardiomediastinum"]:
        changes["mediastinum_width"] = float(rng.uniform(0.16, 0.22))
    return Patient(**{**patient.__dict__, **changes})


def _blob(shape, centre, radius, rng, roughness=0.5) -> np.ndarray:
    """A smooth irregular region around `centre` (pixels) of about `radius` pixels."""
    v, u = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    distance = np.hypot(v - centre[0], u - centre[1]) / radius
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=radius / 3)
    noise /= float(np.abs(noise).max()) or 1.0
    return distance + roughness * noise < 1.0


def _sphere(anatomy: Anatomy, centre: tuple[int, int], radius: float, rng: np.random.Generator) -> np.ndarray:
    """Draw a solid round lesion (a sphere's chord lengths, slightly denser than water) into the anatomy;
    return its disc."""
    rows = anatomy.shape[0]
    v, u = np.mgrid[0 : anatomy.shape[0], 0 : anatomy.shape[1]]
    d = np.hypot(v - centre[0], u - centre[1]) / radius
    # a 40 cm field makes `rows` pixels 40 cm
    chord = 2 * radius / rows * 40 * np.sqrt(np.clip(1 - d**2, 0, 1))
    anatomy.soft += (chord * rng.uniform(1.0, 1.4)).astype(np.float32)
    return d <= 1.0


def _point_in(
    mask: np.ndarray, rng: np.random.Generator, rows: tuple[float, float] = (0.0, 1.0)
) -> tuple[int, int]:
    candidates = np.argwhere(mask)
    lo, hi = np.quantile(candidates[:, 0], rows)
    candidates = candidates[(candidates[:, 0] >= lo) & (candidates[:, 0] <= hi)]
    r, c = candidates[rng.integers(len(candidates))]
    return int(r), int(c)


def _line_mask(shape, points: np.ndarray, half_width: float) -> np.ndarray:
    """Pixels within half_width of a polyline given as (N, 2) rows, columns."""
    canvas = np.zeros(shape, bool)
    for (r0, c0), (r1, c1) in zip(points[:-1], points[1:], strict=True):
        n = int(max(abs(r1 - r0), abs(c1 - c0))) + 2
        rr = np.clip(np.round(np.linspace(r0, r1, n)).astype(int), 0, shape[0] - 1)
        cc = np.clip(np.round(np.linspace(c0, c1, n)).astype(int), 0, shape[1] - 1)
        canvas[rr, cc] = True
    if half_width <= 0.5:
        return canvas
    return ndimage.distance_transform_edt(~canvas) <= half_width


def render_findings(anatomy: Anatomy, present: dict[str, bool], rng: np.random.Generator) -> FindingSet:
    """Draw every present observation into the anatomy; return the masks of the localised ones."""
    shape = anatomy.shape
    rows = shape[0]
    lungs = anatomy.lungs
    sides = [anatomy.right_lung, anatomy.left_lung]
    result = FindingSet(present=dict(present))
    masks = result.masks
    if present["Cardiomegaly"]:
        masks["Cardiomegaly"] = anatomy.heart.copy()
    if present["Enlarged Cardiomediastinum"]:
        masks["Enlarged Cardiomediastinum"] = anatomy.mediastinum.copy()
    if present["Lung Lesion"]:
        lesions = np.zeros(shape, bool)
        if rng.random() < 0.5:  # a solitary nodule or mass
            radius = rows * (rng.uniform(0.025, 0.045) if rng.random() < 0.6 else rng.uniform(0.045, 0.075))
            lesions |= _sphere(anatomy, _point_in(sides[rng.integers(2)], rng, (0.1, 0.85)), radius, rng)
        else:  # metastases: round nodules and masses of many sizes in both lungs
            for _ in range(int(rng.integers(3, 11))):
                centre = _point_in(sides[rng.integers(2)], rng, (0.1, 0.95))
                lesions |= _sphere(anatomy, centre, rows * rng.uniform(0.015, 0.06), rng)
        masks["Lung Lesion"] = lesions
    consolidation_site: tuple[np.ndarray, tuple[int, int]] | None = None
    if present["Consolidation"]:
        lung = sides[rng.integers(2)]
        centre = _point_in(lung, rng, (0.35, 0.95))
        consolidation_site = (lung, centre)
        region = _blob(shape, centre, rows * rng.uniform(0.06, 0.11), rng) & lung
        density = ndimage.gaussian_filter(region.astype(np.float32), sigma=rows / 200) * rng.uniform(4.0, 7.0)
        bronchi = _air_bronchograms(region, rng)
        anatomy.soft += density - 2.0 * bronchi
        masks["Consolidation"] = region
    if present["Pneumonia"]:
        if consolidation_site is None:
            lung = sides[rng.integers(2)]
            centre = _point_in(lung, rng, (0.3, 0.95))
        else:  # the consolidation is this pneumonia's: the patchy opacity spreads around it
            lung, centre = consolidation_site
        region = _blob(shape, centre, rows * rng.uniform(0.07, 0.12), rng, 0.8) & lung
        patchy = ndimage.gaussian_filter(rng.random(shape).astype(np.float32), sigma=rows / 120)
        patchy = (patchy - patchy.min()) / (np.ptp(patchy) or 1.0)
        anatomy.soft += ndimage.gaussian_filter(region * (0.4 + patchy), sigma=rows / 250) * rng.uniform(
            3.0, 5.5
        )
        masks["Pneumonia"] = region | masks.get("Consolidation", np.zeros(shape, bool))
    if present["Edema"]:
        haze = np.zeros(shape, np.float32)
        v, u = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        for hilum in anatomy.hila:
            haze += np.exp(-(((v / rows - hilum[0]) / 0.12) ** 2 + ((u / shape[1] - hilum[1]) / 0.1) ** 2))
        haze *= lungs
        kerley = np.zeros(shape, bool)
        for lung in sides:
            for _ in range(6):  # short horizontal septal lines at the lateral lung bases
                r, c = _point_in(lung, rng, (0.7, 0.95))
                kerley |= _line_mask(shape, np.array([[r, c - rows * 0.02], [r, c + rows * 0.02]]), 0.5)
        kerley &= lungs
        anatomy.soft += haze * rng.uniform(2.5, 4.0) + 1.5 * ndimage.gaussian_filter(
            kerley.astype(np.float32), 0.7
        )
        masks["Edema"] = (haze > 0.35) | kerley
    fluid_levels: dict[int, float] = {}  # the fluid level's row on each side with an effusion
    if present["Pleural Effusion"]:
        fluid = np.zeros(shape, bool)
        for i in rng.permutation(2)[: 1 + int(rng.random() < 0.4)]:
            lung = sides[i]
            coords = np.argwhere(lung)
            level = np.quantile(coords[:, 0], rng.uniform(0.72, 0.9))
            columns = np.arange(shape[1])
            lateral = columns.max() if i == 1 else 0
            span = float(np.ptp(coords[:, 1])) or 1.0
            # meniscus: higher at the lateral chest wall, curving down medially
            meniscus = level - rows * 0.05 * np.exp(-np.abs(columns - lateral) / (0.35 * span))
            below = np.arange(shape[0])[:, None] >= meniscus[None, :]
            hull = ndimage.binary_dilation(lung, iterations=int(rows * 0.01)) & below
            fluid |= hull
            fluid_levels[int(i)] = float(level)
        fluid &= ~anatomy.heart
        depth = ndimage.gaussian_filter(fluid.astype(np.float32), sigma=rows / 150)
        anatomy.soft += depth * rng.uniform(6.0, 10.0)
        masks["Pleural Effusion"] = fluid
    if present["Atelectasis"]:
        if fluid_levels:  # compressive atelectasis: the lung just above an effusion collapses under it
            side = list(fluid_levels)[int(rng.integers(len(fluid_levels)))]
            lung = sides[side]
            r = int(fluid_levels[side] - rows * rng.uniform(0.02, 0.04))
            row = np.flatnonzero((lung & ~masks["Pleural Effusion"])[max(r, 0)])
            r, c = (r, int(np.median(row))) if len(row) else _point_in(lung, rng, (0.65, 0.9))
        else:
            side = int(rng.integers(2))
            lung = sides[side]
            r, c = _point_in(lung, rng, (0.65, 0.9))
        length = rows * rng.uniform(0.06, 0.12)
        tilt = rng.uniform(-0.25, 0.25)
        band = _line_mask(
            shape,
            np.array([[r - tilt * length, c - length], [r + tilt * length, c + length]]),
            rows * rng.uniform(0.006, 0.014),
        )
        aerated = lung & ~masks.get(
            "Pleural Effusion", np.zeros(shape, bool)
        )  # the fluid hides what it covers
        band &= aerated
        anatomy.soft += ndimage.gaussian_filter(band.astype(np.float32), sigma=rows / 300) * rng.uniform(
            3.0, 5.0
        )
        collapse = np.zeros(shape, bool)
        if rng.random() < 0.5:  # segmental lower-lobe collapse: a triangle from the hilum to the medial base
            coords = np.argwhere(lung)
            base = float(np.quantile(coords[:, 0], 0.97))
            medial = float(coords[:, 1].max() if side == 0 else coords[:, 1].min())
            width = float(np.ptp(coords[:, 1])) * rng.uniform(0.3, 0.5)
            lateral = medial - width if side == 0 else medial + width
            hilum_row, hilum_column = anatomy.hila[side][0] * rows, anatomy.hila[side][1] * shape[1]
            rr, cc = fill_polygon(
                np.array([hilum_row, base, base]), np.array([hilum_column, medial, lateral]), shape
            )
            collapse[rr, cc] = True
            collapse &= aerated
            anatomy.soft += ndimage.gaussian_filter(
                collapse.astype(np.float32), sigma=rows / 200
            ) * rng.uniform(3.5, 5.5)
        masks["Atelectasis"] = band | collapse
    if present["Pneumothorax"]:
        side = int(rng.integers(2))
        lung = sides[side]
        depth = rows * rng.uniform(0.05, 0.11)
        inside = ndimage.distance_transform_edt(lung)
        # the apical / lateral rim of the lung, up to `depth` from its outer edge, becomes pleural gas
        gas = (
            lung
            & (inside <= depth)
            & (np.arange(shape[0])[:, None] < np.quantile(np.argwhere(lung)[:, 0], 0.7))
        )
        medial = (
            np.abs(np.arange(shape[1])[None, :] - shape[1] / 2) < abs(anatomy.hila[side][1] - 0.5) * shape[1]
        )
        gas &= ~medial
        vessels = anatomy.vessels if anatomy.vessels is not None else np.zeros(shape, np.float32)
        anatomy.vessels = np.where(gas, 0.0, vessels).astype(np.float32)  # no markings beyond the line
        pleural_line = gas & ~ndimage.binary_erosion(gas, iterations=1) & (inside > 1)
        anatomy.soft -= gas * rng.uniform(1.5, 2.5)
        anatomy.soft += 2.5 * ndimage.gaussian_filter(pleural_line.astype(np.float32), 0.8)
        masks["Pneumothorax"] = gas
    if present["Pleural Other"]:
        plaques = np.zeros(shape, bool)
        for lung in sides:
            rim = lung & ~ndimage.binary_erosion(lung, iterations=max(int(rows * 0.012), 1))
            for _ in range(int(rng.integers(1, 4))):
                plaques |= _blob(
                    shape, _point_in(rim, rng, (0.2, 0.9)), rows * rng.uniform(0.025, 0.045), rng, 0.3
                ) & ndimage.binary_dilation(rim, iterations=max(int(rows * 0.008), 3))
        # plaques calcify: part of their density is bone-equivalent
        anatomy.soft += ndimage.gaussian_filter(plaques.astype(np.float32), 0.8) * rng.uniform(4.0, 6.0)
        anatomy.bone += ndimage.gaussian_filter(plaques.astype(np.float32), 0.8) * rng.uniform(0.3, 0.8)
        masks["Pleural Other"] = plaques
    if present["Fracture"]:
        fracture = np.zeros(shape, bool)
        healing = rng.random() < 0.6
        for break_row, break_column in _rib_fracture_sites(anatomy, rng):
            fracture |= _break_rib(anatomy, break_row, break_column, healing, rng)
        masks["Fracture"] = fracture
    if present["Support Devices"]:
        masks["Support Devices"] = _devices(anatomy, rng)
    if present["Lung Opacity"]:
        own = np.zeros(shape, bool)
        if not any(present[name] for name in OPACITY_TYPES):
            lung = sides[rng.integers(2)]
            own = (
                _blob(shape, _point_in(lung, rng, (0.2, 0.9)), rows * rng.uniform(0.05, 0.09), rng, 0.7)
                & lung
            )
            anatomy.soft += ndimage.gaussian_filter(own.astype(np.float32), sigma=rows / 150) * rng.uniform(
                2.0, 3.5
            )
        union = own.copy()
        for name in OPACITY_TYPES:
            if name in masks:
                union |= masks[name]
        masks["Lung Opacity"] = union
    return result


def _rib_fracture_sites(anatomy: Anatomy, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Points on the axillary arcs (the outer half, from the spine) of 1-3 neighbouring ribs on one side,
    where they project over aerated lung. Rib fractures are commonest on the lateral arcs, and over aerated
    lung is where a break shows on a frontal radiograph (and where radiologists look): over the abdomen, the
    heart or the chest wall the cortex has no air behind it, and on the medial arcs a callus sits among
    the hilar vessels' end-on shadows. Half the patients have one broken rib; the others have the next
    one or two broken too, near the same column, as from one blow."""
    rows, columns = anatomy.shape
    aerated = ndimage.binary_erosion(anatomy.lungs, iterations=max(int(rows * 0.02), 1))
    lateral = [rib[9 * len(rib) // 20 : 9 * len(rib) // 10] for rib in anatomy.ribs]

    def over_lung(r: float, c: float) -> bool:
        return 0 <= int(r) < rows and 0 <= int(c) < columns and bool(aerated[int(r), int(c)])

    sites = [
        (index, float(r), float(c)) for index, seg in enumerate(lateral) for r, c in seg if over_lung(r, c)
    ]
    if not sites:  # a lung too small to erode: any lateral rib point
        segment = lateral[int(rng.integers(len(lateral)))]
        r, c = segment[int(rng.integers(len(segment)))]
        return [(float(r), float(c))]
    first, row, column = sites[int(rng.integers(len(sites)))]
    found = [(row, column)]
    count = 1 if rng.random() < 0.5 else int(rng.integers(2, 4))
    per_side = len(lateral) // 2
    for index in range(first + 1, first + count):
        if index // per_side != first // per_side:
            break  # the last rib of its side
        r, c = lateral[index][int(np.abs(lateral[index][:, 1] - column).argmin())]
        if not over_lung(r, c):
            break
        found.append((float(r), float(c)))
    return found


def _break_rib(
    anatomy: Anatomy, break_row: float, break_column: float, healing: bool, rng: np.random.Generator
) -> np.ndarray:
    """A displaced fracture: an oblique lucent line across the rib, and the outer fragment stepped off
    by 70-110 % of a rib's width at the break, back in line a few centimetres further out (the rib is held
    at its costal cartilage); a healing one also has a fusiform callus of new bone around the break.
    Returns the break's box."""
    rows, columns = anatomy.shape
    half = rows * 0.012
    reach = int(half * 8) + 2
    r0, r1 = max(int(break_row) - reach, 0), min(int(break_row) + reach + 1, rows)
    c0, c1 = max(int(break_column) - reach, 0), min(int(break_column) + reach + 1, columns)
    v, u = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    down, across = v - break_row, u - break_column
    outward = across if break_column > columns / 2 else -across  # towards the chest wall
    step = rows * 0.018 * rng.uniform(0.7, 1.1) * rng.choice([-1.0, 1.0])
    taper = np.clip(1 - outward / (half * rng.uniform(4.0, 7.0)), 0, 1)
    shift = np.where((outward > 0) & (np.abs(down) < half * 3), step * taper, 0.0)
    bone = ndimage.map_coordinates(anatomy.bone, [v - shift, u], order=1, mode="nearest")
    line = (np.abs(across + rng.uniform(-0.5, 0.5) * down) < max(half * 0.7, 1.0)) & (
        np.abs(down) < half * 2.2
    )
    bone = np.where(line, 0.0, bone)  # the cortical break
    if healing:
        callus = (down / (half * 1.8)) ** 2 + (across / (half * 2.8)) ** 2 < 1.0
        bone += ndimage.gaussian_filter(callus.astype(np.float32), half / 3) * rng.uniform(1.0, 1.5)
    anatomy.bone[r0:r1, c0:c1] = bone
    box = np.zeros(anatomy.shape, bool)
    box[
        max(int(np.ceil(break_row - half * 3)), 0) : int(np.ceil(break_row + half * 3)),
        max(int(np.ceil(break_column - half * 3)), 0) : int(np.ceil(break_column + half * 3)),
    ] = True
    return box


def _air_bronchograms(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Branching lucent tubes inside a consolidation."""
    shape = region.shape
    tree = np.zeros(shape, bool)
    coords = np.argwhere(region)
    if len(coords) == 0:
        return tree.astype(np.float32)
    for _ in range(3):
        r, c = coords[rng.integers(len(coords))]
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(3):
            length = shape[0] * rng.uniform(0.02, 0.05)
            end = (r + np.sin(angle) * length, c + np.cos(angle) * length)
            tree |= _line_mask(shape, np.array([[r, c], end]), 0.5)
            r, c = end
            angle += rng.normal(0, 0.5)
    return ndimage.gaussian_filter((tree & region).astype(np.float32), 0.7)


def _devices(anatomy: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """1-3 of: endotracheal tube, central venous line, pacemaker with lead, nasogastric tube (metal /
    radio-opaque stripes as bone-equivalent thickness)."""
    shape = anatomy.shape
    rows, columns = shape
    p = anatomy.patient
    top = (p.thorax_top if p else 0.12) * rows
    mask = np.zeros(shape, bool)
    kinds = rng.permutation(["ett", "line", "pacemaker", "ng"])[: int(rng.integers(1, 4))]
    for kind in kinds:
        if kind == "ett":
            path = np.array([[0, columns * 0.5], [top + rows * 0.12, columns * 0.5]])
            # a tube shows as two radio-opaque walls: at least one pixel of lumen between them
            outer, inner = max(rows * 0.006, 1.5), max(rows * 0.003, 0.5)
            stripe = _line_mask(shape, path, outer) & ~_line_mask(shape, path, inner)
        elif kind == "ng":
            path = np.array(
                [[0, columns * 0.49], [top + rows * 0.5, columns * 0.5], [top + rows * 0.62, columns * 0.58]]
            )
            stripe = _line_mask(shape, path, rows * 0.003)
        elif kind == "line":
            side = rng.choice([-1, 1])
            path = np.array(
                [
                    [top + rows * 0.02, columns * (0.5 + side * 0.3)],
                    [top + rows * 0.05, columns * (0.5 + side * 0.12)],
                    [top + rows * 0.2, columns * (0.5 + side * 0.03)],
                ]
            )
            stripe = _line_mask(shape, path, rows * 0.0025)
        else:  # pacemaker generator in the left upper chest, lead into the heart
            r0, c0 = top + rows * 0.06, columns * 0.72
            box = np.zeros(shape, bool)
            box[int(r0) : int(r0 + rows * 0.05), int(c0) : int(c0 + columns * 0.07)] = True
            heart = np.argwhere(anatomy.heart)
            target = heart[len(heart) // 2] if len(heart) else (rows * 0.6, columns * 0.55)
            lead = _line_mask(
                shape,
                np.array([[r0 + rows * 0.02, c0], [top + rows * 0.12, columns * 0.56], list(target)]),
                rows * 0.003,
            )
            anatomy.bone += box * 4.0
            stripe = box | lead
        anatomy.bone += (stripe * 2.0).astype(np.float32)
        mask |= stripe
    return ndimage.binary_dilation(mask, iterations=2)
