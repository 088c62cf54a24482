"""Which files are a radiograph and which are our results for it, among headers from a folder, Slicer's
DICOM database or a PACS retrieval.

Our objects say so (Manufacturer "CXR-XAI", the device of every result). The SR names its source
radiograph in its Image Library and lists its SEGs and Secondary Captures as evidence, so a result set is
built from the SR alone; objects the SR lists but that are not among the files are reported as missing
rather than guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

OUR_MANUFACTURER = "CXR-XAI"
RADIOGRAPH_MODALITIES = ("CR", "DX")
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PRESENTATION_STATE = "1.2.840.10008.5.1.4.1.1.11.1"  # Grayscale Softcopy Presentation State: our outlines


@dataclass
class ResultSet:
    """Our SR for one radiograph and the files of the SEGs and pictures it lists."""

    sr: str
    source_sop_instance_uid: str
    study_instance_uid: str
    model: str
    created: str  # Content Date + Time of the SR, for newest-first order
    segmentations: list[str] = field(default_factory=list)
    pictures: list[str] = field(default_factory=list)
    presentation_states: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # SOP Instance UIDs listed but not found


def read_headers(paths: Iterable[str | Path]) -> list[Dataset]:
    """Headers (no pixel data) of the DICOM files among `paths` (folders are searched); others skipped."""
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    headers = []
    for file in files:
        try:
            header = dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue
        header.filename = str(file)
        headers.append(header)
    return headers


def is_ours(header: Dataset) -> bool:
    return str(header.get("Manufacturer", "")) == OUR_MANUFACTURER


def radiographs(headers: Iterable[Dataset]) -> list[Dataset]:
    """The CR / DX images (not ours), in study, series and instance order."""
    found = [h for h in headers if str(h.get("Modality", "")) in RADIOGRAPH_MODALITIES and not is_ours(h)]
    return sorted(found, key=lambda h: (str(h.get("StudyInstanceUID", "")), int(h.get("SeriesNumber") or 0),
                                        int(h.get("InstanceNumber") or 0)))  # fmt: skip


def result_sets(headers: Iterable[Dataset]) -> list[ResultSet]:
    """Every result set among the headers, newest first."""
    from cxrxai.dicom.sr import SRReadError, evidence, read_sr

    headers = list(headers)
    by_uid = {str(h.SOPInstanceUID): h for h in headers if "SOPInstanceUID" in h}
    sets = []
    for header in headers:
        if str(header.get("Modality", "")) != "SR" or not is_ours(header):
            continue
        try:
            reported = read_sr(header)
        except SRReadError:
            continue
        found = ResultSet(
            sr=str(header.filename),
            source_sop_instance_uid=reported.source_sop_instance_uid,
            study_instance_uid=str(header.StudyInstanceUID),
            model=f"{reported.algorithm_name} {reported.algorithm_version}".strip(),
            created=f"{header.get('ContentDate', '')}{header.get('ContentTime', '')}",
        )
        for _, sop_class, uid in evidence(header):
            listed = {
                SEGMENTATION: found.segmentations,
                SECONDARY_CAPTURE: found.pictures,
                PRESENTATION_STATE: found.presentation_states,
            }.get(sop_class)
            if listed is None:
                continue
            if uid not in by_uid:
                found.missing.append(uid)
            else:
                listed.append(str(by_uid[uid].filename))
        sets.append(found)
    return sorted(sets, key=lambda s: s.created, reverse=True)


def results_for(source_sop_instance_uid: str, headers: Iterable[Dataset]) -> list[ResultSet]:
    """The result sets of one radiograph, newest first (one per model that explained it)."""
    return [s for s in result_sets(headers) if s.source_sop_instance_uid == source_sop_instance_uid]


def load(result_set: ResultSet):
    """The RadiographResults of a result set (reads the SR, the SEGs' pixel data and the outlines)."""
    from CXRXAILib.catalogue import read_results

    return read_results(
        dcmread(result_set.sr),
        [dcmread(path) for path in result_set.segmentations],
        result_set.pictures,
        [dcmread(path) for path in result_set.presentation_states],
    )
