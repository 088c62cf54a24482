"""What every result object shares: deterministic UIDs, the device that made it, series roles."""

from __future__ import annotations

from dataclasses import dataclass

from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid

from cxrxai.dicom import codes

# One series per object kind, with fixed numbers and descriptions a PACS user can recognise.
SERIES = {
    "sr": (9001, "CXR-XAI findings (AI-generated, not for diagnostic use)"),
    "seg-anatomy": (9002, "CXR-XAI lungs and heart (AI-generated)"),
    "seg-heatmaps": (9003, "CXR-XAI heatmaps (AI-generated)"),
    "sc": (9004, "CXR-XAI overlays (AI-generated, not for diagnostic use)"),
    "gsps": (9005, "CXR-XAI outlines (AI-generated, not for diagnostic use)"),
}
DISCLAIMER = "AI-generated - not for diagnostic use"


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
    item.PurposeOfReferenceCodeSequence = Sequence([CodedConcept.from_code(codes.PROCESSING_ALGORITHM.code)])
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
