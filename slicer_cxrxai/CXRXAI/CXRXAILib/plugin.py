"""What the CXR-XAI DICOM plugin claims in Slicer's DICOM browser, and with which confidence.

Slicer's generic TID 1500 loader claims any such SR with confidence 0.95, and its SEG loader (dcmqi)
claims SEGs it cannot read for a projection radiograph (dcmqi issue 319). Ours claims only our own
objects, above both, so the DICOM browser opens them with this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from CXRXAILib.matching import ResultSet, is_ours, read_headers, result_sets

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


class NotLoadable(LookupError):
    """What the DICOM browser offered cannot be opened; the message says what to do."""


@dataclass(frozen=True)
class Opening:
    """What loading a claimed file opens: a result set, and the header of the radiograph it is for."""

    result_set: ResultSet
    radiograph: Dataset


def examine_file_lists(file_lists: Iterable[Sequence[str]]) -> list[Claim]:
    """Our claims among the file lists (one per series) Slicer's DICOM browser examines."""
    return [claim for files in file_lists for claim in examine(read_headers(files))]


def what_to_open(claimed: Sequence[str], kind: str, study: Iterable[Dataset]) -> Opening:
    """The result set a claimed SR (or SEG) stands for among the headers of its study, and the radiograph
    it is for. Never another radiograph: when the SR or the radiograph is not in the database, raises
    NotLoadable saying which to import."""
    headers = list(study)
    sets = result_sets(headers)
    if kind == "findings":
        sets = [s for s in sets if s.sr in claimed]
    else:  # a SEG: the newest result set that lists it
        sets = [s for s in sets if any(path in claimed for path in s.segmentations)]
    if not sets:
        raise NotLoadable("the CXR-XAI SR that lists these results is not in the DICOM database: import it")
    chosen = sets[0]
    radiograph = next((h for h in headers if str(h.SOPInstanceUID) == chosen.source_sop_instance_uid), None)
    if radiograph is None:
        raise NotLoadable(
            f"the radiograph these results are for ({chosen.source_sop_instance_uid}) is not in the DICOM "
            "database: import it, then load the results again"
        )
    return Opening(chosen, radiograph)
