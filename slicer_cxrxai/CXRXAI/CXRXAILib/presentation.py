"""The outlines our presentation state (GSPS) carries: the lungs and heart, and each finding's hottest region,
in the radiograph's pixel coordinates. pydicom only, so Slicer can draw them as markups."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

GRAYSCALE_SOFTCOPY_PRESENTATION_STATE = "1.2.840.10008.5.1.4.1.1.11.1"


@dataclass(frozen=True)
class Outline:
    layer: str  # the GSPS graphic layer: "ANATOMY" or "FINDINGS"
    label: str  # a structure ("Heart") or a finding with its probability ("Cardiomegaly p=0.91")
    points: np.ndarray  # N x 2 (column, row) in DICOM pixel units: the top-left pixel's centre is (0.5, 0.5)


def read_outlines(presentation_state: Dataset) -> list[Outline]:
    """Every polyline of the presentation state, in its graphic layers' order; PIXEL units only (ours
    are), DISPLAY-unit graphics have no place on the radiograph and are skipped."""
    if str(presentation_state.get("SOPClassUID", "")) != GRAYSCALE_SOFTCOPY_PRESENTATION_STATE:
        raise ValueError("not a grayscale softcopy presentation state")
    found = []
    for annotation in presentation_state.get("GraphicAnnotationSequence", []):
        for graphic in annotation.get("GraphicObjectSequence", []):
            if graphic.get("GraphicType") != "POLYLINE" or graphic.get("GraphicAnnotationUnits") != "PIXEL":
                continue
            points = np.asarray(graphic.GraphicData, dtype=np.float64).reshape(-1, 2)
            label = str(graphic.get("TrackingID", "") or annotation.GraphicLayer)
            found.append(Outline(str(annotation.GraphicLayer), label, points))
    return found
