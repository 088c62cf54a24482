"""What the CXR-XAI DICOM plugin claims in Slicer's DICOM browser, and with which confidence.

Slicer's generic TID 1500 loader claims any such SR with confidence 0.95, and its SEG loader (dcmqi)
claims SEGs it cannot read for a projection radiograph (dcmqi issue 319). Ours claims only our own
objects, above both, so the DICOM browser opens them with this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.dataset import Dataset

from CXRXAILib.matching import is_ours

CONFIDENCE = 0.99  # above Slicer's TID 1500 (0.95) and SEG plugins for the same files
TID_1500 = "1500"


@dataclass(frozen=True)
class Claim:
    file: str
    kind: str  # "findings" (our SR) or "maps" (our SEG)
    name: str
    confidence: float = CONFIDENCE


def examine(headers: Iterable[Dataset]) -> list[Claim]:
    """Our findings SRs and our SEGs among the headers of one series."""
    claims = []
    for header in headers:
        if not is_ours(header):
            continue
        description = str(header.get("SeriesDescription", "CXR-XAI"))
        if _is_tid1500(header):
            claims.append(Claim(str(header.filename), "findings", f"{description} - findings and heatmaps"))
        elif str(header.get("Modality", "")) == "SEG":
            claims.append(
                Claim(str(header.filename), "maps", f"{description} - {header.get('ContentLabel', 'SEG')}")
            )
    return claims


def _is_tid1500(header: Dataset) -> bool:
    from cxrxai.dicom.sr import TID1500_SR_CLASSES

    template = header.get("ContentTemplateSequence")
    return (
        str(header.get("SOPClassUID", "")) in TID1500_SR_CLASSES
        and bool(template)
        and str(template[0].get("TemplateIdentifier", "")) == TID_1500
    )
