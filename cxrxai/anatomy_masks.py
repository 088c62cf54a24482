"""The lung and heart masks from the model's probabilities: thresholded, then held together anatomically.

A segmentation network decides pixel by pixel, so on a radiograph unlike its training data it leaves
pieces: lung in the upper corners outside the chest, a heart cut in two along the spine, holes where an
opacity or a rib crossing darkens the lung. Lung-segmentation tools clean this up the same way (the
`lungmask` package keeps the largest connected components), and so do we, once, on the model's grid,
before anything uses the masks (the CTR, lung-masked maps, in-lung fractions, Seg-Grad-CAM, the SEG, the
outlines); the probabilities themselves are kept unchanged beside the masks.

- Each lung: its largest 8-connected piece, holes filled; it lies on its own side of the thoracic midline
  (half way between the two lungs' largest pieces), and pieces outside the chest or across the midline
  are dropped.
- The heart: its pieces outside the lung fields whose centres lie between the two lungs' centres and
  below the lungs' mid-height, and that are not specks beside the largest (with the pixels where they
  overlap a lung's edge); several are joined by their convex hull less the lungs; holes filled. The cardiac
  silhouette on a frontal radiograph is convex, so a heart the model split along the spine is the hull of
  its pieces, not its largest piece (which would halve the cardiothoracic ratio).
- A heart the rules cannot place (no lung found) keeps its largest piece, and lungs the wrong way round
  stay so, so the anatomy checks still see, and report, what the model did.

SimpleITK does the labelling and hole filling (ConnectedComponent, RelabelComponent, BinaryFillhole);
scikit-image the convex hull, which SimpleITK has no 2-D filter for. Both need the model extra.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RIGHT_LUNG, LEFT_LUNG, HEART = "Right Lung", "Left Lung", "Heart"
JOINING_SHARE = 0.05  # a heart piece joins the largest when it has at least this share of its pixels


def threshold_masks(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """The masks as the network gives them: each structure's probability at or above the threshold."""
    return np.asarray(probabilities) >= threshold


def anatomy_masks(probabilities: np.ndarray, names: Sequence[str], threshold: float) -> np.ndarray:
    """Post-processed masks (structures x N x N, bool) from probabilities of the same shape. Structures
    other than the two lungs and the heart (another bundle's) are thresholded only."""
    raw = threshold_masks(probabilities, threshold)
    masks = raw.copy()
    index = {name: i for i, name in enumerate(names)}
    if RIGHT_LUNG in index and LEFT_LUNG in index:
        right, left = _lungs(raw[index[RIGHT_LUNG]], raw[index[LEFT_LUNG]])
        masks[index[RIGHT_LUNG]], masks[index[LEFT_LUNG]] = right, left
        if HEART in index:
            masks[index[HEART]] = _heart(raw[index[HEART]], right, left)
    elif HEART in index:
        masks[index[HEART]] = _fill_holes(_largest(raw[index[HEART]]))
    return masks


def _lungs(right: np.ndarray, left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each lung's largest piece, holes filled. The thoracic midline lies half way between the two largest
    pieces, so each is on its own side of it, and the pieces dropped are those in the corners, across the
    midline or anywhere else. Lungs the wrong way round (a mirrored image) stay so, for the checks."""
    return _fill_holes(_largest(right)), _fill_holes(_largest(left))


def _heart(heart: np.ndarray, right: np.ndarray, left: np.ndarray) -> np.ndarray:
    lungs = right | left
    if not right.any() or not left.any():
        return _fill_holes(_largest(heart & ~lungs))
    rows = np.flatnonzero(lungs.any(axis=1))
    mid_height = (rows[0] + rows[-1]) / 2
    low, high = sorted((_centre_column(right), _centre_column(left)))
    inside = [
        piece
        for piece in _pieces(heart & ~lungs)
        if low <= _centre_column(piece) <= high and _centre_row(piece) >= mid_height
    ]
    if not inside:
        return np.zeros_like(heart)
    # specks do not join: one stray pixel would stretch the hull over tissue the network did not call heart
    inside = [piece for piece in inside if piece.sum() >= JOINING_SHARE * inside[0].sum()]
    kept = np.logical_or.reduce(inside)
    # the model's own pixels of each kept piece, including where it overlaps a lung's edge
    whole = np.logical_or.reduce([piece for piece in _pieces(heart) if (piece & kept).any()])
    if len(inside) > 1:
        from skimage.morphology import convex_hull_image

        whole |= convex_hull_image(kept) & ~lungs
    return _fill_holes(_largest(whole))


def _pieces(mask: np.ndarray) -> list[np.ndarray]:
    """The mask's 8-connected pieces, largest first."""
    import SimpleITK as sitk

    if not mask.any():
        return []
    labelled = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True)
    labels = sitk.GetArrayFromImage(sitk.RelabelComponent(labelled))  # 1 = largest
    return [labels == label for label in range(1, int(labels.max()) + 1)]


def _largest(mask: np.ndarray) -> np.ndarray:
    pieces = _pieces(mask)
    return pieces[0] if pieces else np.zeros_like(mask, dtype=bool)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    import SimpleITK as sitk

    if not mask.any():
        return mask.astype(bool)
    filled = sitk.BinaryFillhole(sitk.GetImageFromArray(mask.astype(np.uint8)), True)
    return sitk.GetArrayFromImage(filled).astype(bool)


def _centre_column(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[1].mean())


def _centre_row(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[0].mean())
