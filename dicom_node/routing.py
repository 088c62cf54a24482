"""Which received instances the node explains: chest CR / DX radiographs in a frontal (PA / AP) view.

Departments fill the tags unevenly, so each test has a fallback when its tag is missing (never when it
is present and says otherwise):
- Modality must be one of the configured ones (CR, DX), or, when missing, the SOP class must be CR or
  DX storage.
- Body Part Examined must name the chest; when it is missing, a chest keyword in the Study / Series /
  Protocol description will do; when all are missing, the image is accepted (a chest-only routing rule
  in the PACS is the common set-up, and the node says in the record that it assumed so).
- View Position must be PA or AP; when missing, a lateral keyword (LAT, LL, RL) in the descriptions
  skips the image, anything else is accepted.
Every decision carries its reason, which is recorded for skipped instances.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from cxrxai.io.sop_classes import PROJECTION_RADIOGRAPHS
from dicom_node.config import RoutingSection

LATERAL_WORDS = ("LATERAL", "LAT", "LL", "RL")


@dataclass(frozen=True)
class Decision:
    process: bool
    reason: str


def route(dataset: Dataset, rules: RoutingSection) -> Decision:
    modality = str(dataset.get("Modality", "") or "").upper()
    if modality:
        if modality not in rules.modalities:
            return Decision(False, f"modality {modality} is not one of {', '.join(rules.modalities)}")
    elif str(dataset.get("SOPClassUID", "")) not in PROJECTION_RADIOGRAPHS:
        return Decision(False, "no Modality and not a CR / DX SOP class")
    words = _description_words(dataset)
    body_part = str(dataset.get("BodyPartExamined", "") or "").upper()
    notes = []
    if body_part:
        if body_part not in rules.body_parts:
            return Decision(False, f"body part {body_part} is not one of {', '.join(rules.body_parts)}")
    elif words & set(rules.description_keywords):
        notes.append("body part from the description")
    else:
        notes.append("no body part or description: assumed chest")
    view = str(dataset.get("ViewPosition", "") or "").upper()
    if view:
        if view not in rules.views:
            return Decision(False, f"view position {view} is not one of {', '.join(rules.views)}")
    elif words & set(LATERAL_WORDS):
        return Decision(False, "no view position and the description says lateral")
    else:
        notes.append("no view position: assumed frontal")
    return Decision(True, "; ".join(notes) or "chest radiograph, frontal view")


def _description_words(dataset: Dataset) -> set[str]:
    text = " ".join(
        str(dataset.get(keyword, "") or "")
        for keyword in (
            "StudyDescription",
            "SeriesDescription",
            "ProtocolName",
            "RequestedProcedureDescription",
        )
    ).upper()
    for separator in "^_-,./()":
        text = text.replace(separator, " ")
    return set(text.split())
