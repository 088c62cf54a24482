"""A statistical shape model of real lung outlines, the phantoms' shape prior.

Built once, offline, from the 517 annotated radiographs whose lung masks ship in the PyPI wheel of
torchxrayvision 1.5.7 (`torchxrayvision/data/semantic_masks_v7labs_lungs.zip`; V7 Labs COVID-19 X-ray
dataset annotations, CC BY 4.0, see resources/README.md). Each frontal mask's two lungs are outlined,
normalised to the thorax's bounding box (apex at 0, lowest diaphragm at 1, outer rib margins at 0 and 1),
resampled to the same number of landmarks from the apex round, and reduced by PCA. Only the mean shape
and the main modes are kept (`resources/lung_shape_model.npz`, a few kilobytes): nothing at run time needs
the wheel. Those masks include the lung behind the heart; the phantom cuts the visible lung fields with
its own heart and mediastinum.

Rebuild: python -m cxrxai.phantoms.shape_prior torchxrayvision-1.5.7-py3-none-any.whl
"""

from __future__ import annotations

import io
import sys
import zipfile
from functools import lru_cache
from pathlib import Path

import contourpy
import numpy as np
from PIL import Image
from scipy import ndimage

MODEL = Path(__file__).resolve().parents[2] / "resources" / "lung_shape_model.npz"
MASKS = "torchxrayvision/data/semantic_masks_v7labs_lungs.zip"
LANDMARKS = 64
MODES = 10


def _outline(mask: np.ndarray) -> np.ndarray:
    """Closed outline (N x 2, v, u) of a binary region, counter-clockwise in image coordinates."""
    lines = contourpy.contour_generator(z=np.pad(mask.astype(np.float64), 1)).lines(0.5)
    line = np.asarray(max(lines, key=lambda item: len(item)))[:, ::-1] - 1.0  # (row, column)
    area = 0.5 * np.sum(line[:-1, 1] * line[1:, 0] - line[1:, 1] * line[:-1, 0])
    return line if area > 0 else line[::-1]


def _resample(line: np.ndarray, count: int) -> np.ndarray:
    """`count` points equally spaced along the outline, starting at its highest point (the apex)."""
    start = int(np.argmin(line[:, 0]))
    line = np.roll(line[:-1], -start, axis=0)
    line = np.vstack([line, line[:1]])
    lengths = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(line, axis=0).T))])
    targets = np.linspace(0, lengths[-1], count, endpoint=False)
    return np.stack([np.interp(targets, lengths, line[:, k]) for k in range(2)], axis=1)


def shape_vector(mask: np.ndarray) -> np.ndarray | None:
    """Both lungs of one frontal mask as a 4 x LANDMARKS vector, normalised to the thorax; None if the
    mask is not two lungs side by side."""
    labels, count = ndimage.label(mask)
    if count < 2:
        return None
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    biggest = np.argsort(sizes)[::-1][:2] + 1
    if sizes[biggest[1] - 1] < 0.2 * sizes[biggest[0] - 1]:
        return None
    lungs = sorted(
        (labels == b for b in biggest), key=lambda m: np.argwhere(m)[:, 1].mean()
    )  # image left first
    both = lungs[0] | lungs[1]
    rows, columns = np.nonzero(both)
    top, bottom, left, right = rows.min(), rows.max(), columns.min(), columns.max()
    scale = np.array([bottom - top, right - left], dtype=np.float64)
    outlines = [(_resample(_outline(lung), LANDMARKS) - [top, left]) / scale for lung in lungs]
    return np.concatenate(outlines).ravel()


def build(wheel: Path, out: Path = MODEL, max_side: int = 256) -> int:
    vectors = []
    with zipfile.ZipFile(wheel) as outer, zipfile.ZipFile(io.BytesIO(outer.read(MASKS))) as masks:
        for name in sorted(masks.namelist()):
            if name.endswith("/"):
                continue
            image = Image.open(io.BytesIO(masks.read(name))).convert("L")
            image.thumbnail((max_side, max_side))
            vector = shape_vector(np.asarray(image) > 127)
            if vector is not None:
                vectors.append(vector)
    data = np.array(vectors)
    mean = data.mean(axis=0)
    _, singular, modes = np.linalg.svd(data - mean, full_matrices=False)
    std = singular / np.sqrt(len(data) - 1)
    np.savez_compressed(
        out,
        mean=mean.astype(np.float32),
        modes=modes[:MODES].astype(np.float32),
        std=std[:MODES].astype(np.float32),
        count=np.array(len(data)),
        landmarks=np.array(LANDMARKS),
    )
    return len(data)


@lru_cache(maxsize=1)
def load_model() -> dict[str, np.ndarray]:
    with np.load(MODEL) as data:
        return {key: data[key] for key in data.files}


def sample_lungs(rng: np.random.Generator, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(image-left = right lung, image-right = left lung) outlines, each LANDMARKS x 2 (v, u) in thorax
    coordinates, from the shape model; coefficients drawn within 2.5 standard deviations."""
    model = load_model()
    coefficients = np.clip(rng.standard_normal(len(model["std"])), -2.5, 2.5) * model["std"] * spread
    vector = model["mean"] + coefficients @ model["modes"]
    points = vector.reshape(2, -1, 2)
    return points[0], points[1]


if __name__ == "__main__":
    print(f"{build(Path(sys.argv[1]))} mask pairs -> {MODEL}")
