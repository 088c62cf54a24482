"""What every result object shares: deterministic UIDs, the device that made it, series roles."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid

from cxrxai.dicom import codes
from cxrxai.errors import UnsupportedInputError
from cxrxai.io.sop_classes import PROJECTION_RADIOGRAPHS

# One series per object kind, with fixed numbers and descriptions a PACS user can recognise.
SERIES = {
    "sr": (9001, "CXR-XAI findings (AI-generated, not for diagnostic use)"),
    "seg-anatomy": (9002, "CXR-XAI lungs and heart (AI-generated)"),
    "seg-heatmaps": (9003, "CXR-XAI heat maps (AI-generated)"),
    "sc": (9004, "CXR-XAI overlays (AI-generated, not for diagnostic use)"),
    "gsps": (9005, "CXR-XAI outlines (AI-generated, not for diagnostic use)"),
    "seg-layers": (9006, "CXR-XAI heat maps per layer (AI-generated)"),
}
DISCLAIMER = "AI-generated - not for diagnostic use"
# What every result object references the source by: its study (which the results join), series and
# instance. A source without them cannot be answered with DICOM results.
REFERENCE_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
# Type 2 attributes of the Patient and General Study modules that every result object copies.
TYPE_2_COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
)  # fmt: skip


@dataclass(frozen=True)
class Device:
    """The algorithm that produced the results (observer device, contributing equipment)."""

    name: str
    version: str
    content_hash: str
    manufacturer: str = "CXR-XAI"

    @property
    def uid(self) -> UID:
        return generate_uid(entropy_srcs=["device", self.name, self.version, self.content_hash])


def missing_reference_uids(source: Dataset) -> list[str]:
    """The reference UIDs the source lacks or leaves empty."""
    return [keyword for keyword in REFERENCE_UIDS if not str(source.get(keyword) or "").strip()]


def check_reference_uids(source: Dataset) -> None:
    """Refuse, in one line, a source our result objects could not reference."""
    missing = missing_reference_uids(source)
    if missing:
        where = getattr(source, "filename", None) or "the source image"
        raise UnsupportedInputError(
            f"{where}: no {', '.join(missing)}: DICOM results reference the source by these UIDs; "
            "fix the header (or use --format files for maps and findings without DICOM results)"
        )


def writers_view(source: Dataset) -> Dataset:
    """The source as our writers (and highdicom's, which copy patient and study from it) need it: the
    source itself, or a copy where it lacks what they require.

    - Type 2 patient and study attributes (PS3.3 C.7.1.1, C.7.2.1) present, empty when the source has
      none: that is how the standard writes "unknown", and highdicom refuses a source without them.
    - Modality from the SOP Class when missing (CR, DX; OT for Secondary Capture).
    - The default repertoire named 'ISO 2022 IR 6' where a Specific Character Set with code extensions
      leaves its first value empty (e.g. '\\ISO 2022 IR 87' for Japanese); both mean the same, and
      highdicom accepts only the defined term.
    """
    changes: dict[str, object] = {keyword: "" for keyword in TYPE_2_COPIED if keyword not in source}
    if not source.get("Modality"):
        changes["Modality"] = PROJECTION_RADIOGRAPHS.get(str(source.get("SOPClassUID", "")), "OT")
    charset = source.get("SpecificCharacterSet")
    values = [charset] if isinstance(charset, str) else list(charset or [])
    if len(values) > 1 and not values[0]:
        changes["SpecificCharacterSet"] = ["ISO 2022 IR 6", *values[1:]]
    if not changes:
        return source
    view = copy.deepcopy(source)  # Dataset.copy() shares the elements: setting one would change the source
    for keyword, value in changes.items():
        setattr(view, keyword, value)
    return view


def result_uid(source_sop_instance_uid: str, content_hash: str, kind: str, role: str) -> UID:
    """Deterministic UID of a result: re-processing the same image with the same model replaces the
    object in a PACS instead of adding a duplicate."""
    return generate_uid(entropy_srcs=[source_sop_instance_uid, content_hash, kind, role])


def add_contributing_equipment(result: Dataset, device: Device) -> None:
    """IHE AI Results: name the algorithm as Contributing Equipment with Purpose of Reference
    (99IHE, 1630, "Processing Algorithm"). Written with pydicom: highdicom's ContributingEquipment accepts
    only the CID 7005 purposes."""
    item = Dataset()
    item.Manufacturer = device.manufacturer
    item.ManufacturerModelName = device.name
    item.SoftwareVersions = device.version
    item.DeviceSerialNumber = device.content_hash.removeprefix("sha256:")[:16]
    item.DeviceUID = device.uid
    item.ContributionDescription = DISCLAIMER
    item.PurposeOfReferenceCodeSequence = Sequence([codes.PROCESSING_ALGORITHM.concept])
    existing = list(result.get("ContributingEquipmentSequence", []))
    result.ContributingEquipmentSequence = Sequence([*existing, item])


def declare_coding_schemes(result: Dataset) -> None:
    """Coding Scheme Identification Sequence for the private schemes our objects use (PS3.3 C.12.1)."""
    schemes = []
    for designator, name, organisation in (
        (codes.PRIVATE_SCHEME, "CXR-XAI concepts (see docs/conformance.md)", "CXR-XAI"),
        ("99IHE", "IHE private coding scheme", "IHE"),
    ):
        item = Dataset()
        item.CodingSchemeDesignator = designator
        item.CodingSchemeName = name
        item.CodingSchemeResponsibleOrganization = organisation
        schemes.append(item)
    result.CodingSchemeIdentificationSequence = Sequence(schemes)


def finish_result(result: Dataset, source: Dataset, device: Device, role: str, image: bool = True) -> None:
    """What every result object gets: the source's character set (non-ASCII names), the series
    description of its role, the processing-algorithm equipment, the private schemes declared; image
    objects also Body Part Examined, and General Series Laterality (Type 2C): copied when the source has
    it, absent for a known unpaired body part (the chest), empty only when the body part is unknown."""
    result.SeriesDescription = SERIES[role][1]
    if "SpecificCharacterSet" in source:
        result.SpecificCharacterSet = source.SpecificCharacterSet
    if image:
        if source.get("BodyPartExamined"):
            result.BodyPartExamined = source.BodyPartExamined
        if source.get("Laterality"):
            result.Laterality = source.Laterality
        elif not source.get("BodyPartExamined"):
            result.Laterality = ""
    add_contributing_equipment(result, device)
    declare_coding_schemes(result)
