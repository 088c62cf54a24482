"""The one coding table of the product: every concept our DICOM objects use, with where its code comes from.

Standard codes are used where DICOM PS3.16 has a matching concept (checked against the PS3.16 code
dictionary that pydicom ships) or the code was checked against a SNOMED CT / UMLS listing. Where we found
no standard code with the same meaning, the concept gets a code in our private coding scheme
`99CXRXAI` (documented in docs/conformance.md), never a guessed standard code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import highdicom as hd
from pydicom.sr.coding import Code

from cxrxai.labels import ANATOMY, FINDINGS

PRIVATE_SCHEME = "99CXRXAI"


@dataclass(frozen=True)
class CodedConcept:
    code: Code
    source: str

    @cached_property
    def concept(self) -> hd.sr.CodedConcept:
        """The code as highdicom's code sequence item, made once and shared by every object that uses it
        (read-only): highdicom takes such an item as it is, where it makes a new one from a `Code` each
        time, about 200 per image at 70 us each."""
        return hd.sr.CodedConcept.from_code(self.code)


def _private(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(
        Code(value, PRIVATE_SCHEME, meaning), "CXR-XAI private scheme (no standard code found)"
    )


def _ps316(value: str, scheme: str, meaning: str, cid: str) -> CodedConcept:
    return CodedConcept(Code(value, scheme, meaning), f"DICOM PS3.16 {cid}")


FINDING_CODES: dict[str, CodedConcept] = {
    "No Finding": _private("NOFINDING", "No Finding"),
    "Enlarged Cardiomediastinum": _private("ENLCARDIOMED", "Enlarged Cardiomediastinum"),
    "Cardiomegaly": _private("CARDIOMEGALY", "Cardiomegaly"),
    "Lung Opacity": _ps316("112001", "DCM", "Opacity", "CID 6102 Thoracic Radiographic Findings"),
    "Lung Lesion": _ps316("52988006", "SCT", "Lesion", "CID 6335"),
    "Edema": _ps316("19242006", "SCT", "Pulmonary edema", "CID 3700"),
    "Consolidation": _private("CONSOLIDATION", "Consolidation"),
    "Pneumonia": CodedConcept(Code("233604007", "SCT", "Pneumonia"), "SNOMED CT (UMLS C0032285)"),
    "Atelectasis": _private("ATELECTASIS", "Atelectasis"),
    "Pneumothorax": _ps316("36118008", "SCT", "Pneumothorax", "CID 6102 Thoracic Radiographic Findings"),
    "Pleural Effusion": _ps316("60046008", "SCT", "Pleural effusion", "CID 645"),
    "Pleural Other": _private("PLEURALOTHER", "Pleural Other"),
    "Fracture": _private("FRACTURE", "Fracture"),
    "Support Devices": _private("SUPPORTDEVICES", "Support Devices"),
}

ANATOMY_CODES: dict[str, CodedConcept] = {
    "Right Lung": _ps316("39607008", "SCT", "Lung", "CID 4 (with laterality Right, SCT 24028007)"),
    "Left Lung": _ps316("39607008", "SCT", "Lung", "CID 4 (with laterality Left, SCT 7771000)"),
    "Heart": _ps316("80891009", "SCT", "Heart", "CID 6102"),
}
LATERALITY: dict[str, Code] = {
    "Right Lung": Code("24028007", "SCT", "Right"),
    "Left Lung": Code("7771000", "SCT", "Left"),
}

PRESENT = _ps316("52101004", "SCT", "Present", "CID 240")
ABSENT = _ps316("272519000", "SCT", "Absent", "CID 240")
PROBABILITY = _private("PROBABILITY", "Probability")
# The probability of one finding as its own concept, so a viewer that labels a measurement by its concept
# name (OHIF does) shows which finding it is: "Cardiomegaly probability: 0.87".
PROBABILITY_OF: dict[str, CodedConcept] = {
    name: _private(f"PROB{number:02d}", f"{name} probability")
    for number, name in enumerate(FINDINGS, start=1)
}
DECISION_THRESHOLD = _private("THRESHOLD", "Decision threshold")
CARDIOTHORACIC_RATIO = _private("CTR", "Cardiothoracic ratio (transverse diameters)")
NO_UNITS = CodedConcept(Code("1", "UCUM", "no units"), "UCUM")
PLAIN_RADIOGRAPHY = _ps316("168537006", "SCT", "Plain radiography", "CID 10005")
CHEST = _ps316("816094009", "SCT", "Chest", "CID 4")
ARTIFICIAL_INTELLIGENCE = _ps316("123110", "DCM", "Artificial Intelligence", "CID 7162")
# IHE Radiology AI Results: Purpose of Reference of the Contributing Equipment that made the object.
PROCESSING_ALGORITHM = CodedConcept(Code("1630", "99IHE", "Processing Algorithm"), "IHE RAD TF AI Results")

assert tuple(FINDING_CODES) == FINDINGS and tuple(ANATOMY_CODES) == ANATOMY


def finding_for_probability_code(code_value: str, scheme: str) -> str | None:
    """The finding whose probability concept this is, or None."""
    for name, concept in PROBABILITY_OF.items():
        if concept.code.value == code_value and concept.code.scheme_designator == scheme:
            return name
    return None


def finding_for_code(code_value: str, scheme: str) -> str | None:
    """The finding name a (code value, scheme) pair stands for, or None."""
    for name, concept in FINDING_CODES.items():
        if concept.code.value == code_value and concept.code.scheme_designator == scheme:
            return name
    return None
