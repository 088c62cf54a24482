"""Query / retrieve from a PACS by C-FIND and C-GET: our SR results (with their SEG and SC objects),
for the results index and the Slicer module, and chest radiographs (CR, DX), for `cxrxai batch`.

Why C-GET: it needs nothing configured on the PACS beyond knowing our AE title (C-MOVE would need the
PACS to know our address and port, and a listening SCP here). Queries follow the Study Root hierarchy
(study -> series of a modality -> instances), so any conformant PACS answers, not only lenient ones.

Idempotent: every run queries again (cheap), but an SR whose UID is in the index is not retrieved again,
and a file already in `into` (a run that stopped between retrieving and indexing) is used without a
second retrieval. Retrieved objects are kept under `into/<study>/<SOP Instance UID>.dcm`, so the index
can point at them (exports need the files). With `heatmaps`, the SEG and Secondary Capture objects an SR
lists as evidence are retrieved too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    EnhancedSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from cxrxai.dicom.peer import Peer
from cxrxai.dicom.sr import evidence
from cxrxai.errors import CXRXAIError
from cxrxai.io.sop_classes import PROJECTION_RADIOGRAPHS
from dicom_node.spool import durable_write

if TYPE_CHECKING:  # the index (SQLAlchemy, pandas) only for ingest_from_pacs: the Slicer module has neither
    from cxrxai.index import ResultsIndex
    from cxrxai.index.database import IngestReport

SR_CLASSES = (Comprehensive3DSRStorage, ComprehensiveSRStorage, EnhancedSRStorage)
RADIOGRAPH_CLASSES = tuple(PROJECTION_RADIOGRAPHS)  # the classes the node receives and explains
# what an SR's evidence adds: heat maps and anatomy, pages, outlines
RESULT_CLASSES = (
    SegmentationStorage, SecondaryCaptureImageStorage, GrayscaleSoftcopyPresentationStateStorage
)  # fmt: skip
STORAGE_CLASSES = (*SR_CLASSES, *RESULT_CLASSES, *RADIOGRAPH_CLASSES)
RETRIEVED_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, JPEG2000Lossless,
    JPEG2000, JPEGLSLossless, RLELossless, JPEGLosslessSV1,
)  # fmt: skip
PENDING = (0xFF00, 0xFF01)


@dataclass
class Retrieval:
    found: int = 0  # SR instances the PACS holds (matching the query)
    skipped: int = 0  # SRs the caller already has (e.g. already indexed)
    retrieved: int = 0  # objects retrieved in this run (SRs and, with heatmaps, SEG / SC)
    files: list[Path] = field(default_factory=list)  # the SR files, retrieved or already in `into`
    failed: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance UID, why)


@dataclass
class PacsReport:
    retrieval: Retrieval
    ingest: IngestReport


def retrieve_results(
    peer: Peer,
    into: Path,
    calling_ae_title: str = "CXRXAI",
    study_instance_uid: str = "",
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    heatmaps: bool = False,
    skip: Callable[[str], bool] = lambda uid: False,
) -> Retrieval:
    """Our SRs in the PACS (of one study, or of a date range, or all), retrieved into `into` unless
    `skip(uid)`; with `heatmaps` also the SEG, SC and presentation-state objects each retrieved SR
    lists. The results index (`ingest_from_pacs`) and the Slicer module share this."""
    retrieval = Retrieval()
    with _associate(peer, calling_ae_title, into) as association:
        for study, series, sop in _instances(
            association, ("SR",), SR_CLASSES, study_instance_uid, date_from, date_to
        ):
            retrieval.found += 1
            path = _file(into, study, sop)
            if skip(sop):
                retrieval.skipped += 1
            elif path.is_file() or _get(association, study, series, sop, retrieval):
                retrieval.files.append(path)
        if heatmaps:
            for path in list(retrieval.files):
                sr = dcmread(path, stop_before_pixels=True)
                for series, sop_class, sop in evidence(sr):
                    if (
                        sop_class in RESULT_CLASSES
                        and not _file(into, str(sr.StudyInstanceUID), sop).is_file()
                    ):
                        _get(association, str(sr.StudyInstanceUID), series, sop, retrieval)
    return retrieval


def ingest_from_pacs(
    index: ResultsIndex,
    peer: Peer,
    into: Path,
    calling_ae_title: str = "CXRXAI",
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    heatmaps: bool = False,
) -> PacsReport:
    """Index the SRs the PACS holds that the index lacks (with `heatmaps`, their SEG / SC files too,
    also for SRs indexed earlier without them)."""
    from cxrxai.index.database import IngestReport

    retrieval = retrieve_results(peer, into, calling_ae_title, "", date_from, date_to, skip=index.has)
    report = PacsReport(retrieval, index.ingest(retrieval.files) if retrieval.files else IngestReport())
    if heatmaps:  # the SEG / SC files of every indexed SR without them: the new ones and earlier ones
        missing = list(_missing_objects(index))
        if missing:
            with _associate(peer, calling_ae_title, into) as association:
                files = [
                    _file(into, study, sop)
                    for study, series, sop in missing
                    if _file(into, study, sop).is_file() or _get(association, study, series, sop, retrieval)
                ]
            if files:
                report.ingest.attached += index.ingest(files).attached
    return report


def _file(into: Path, study: str, sop: str) -> Path:
    return into / study / f"{sop}.dcm"


class _associate:
    """One association for the whole run: Find, Get, and the storage classes we accept as SCP role."""

    def __init__(self, peer: Peer, calling_ae_title: str, into: Path) -> None:
        self.peer, self.into = peer, into
        self.ae = AE(ae_title=calling_ae_title)
        self.ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        self.ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        # one context per (class, syntax): a PACS that sends what it stores (Orthanc cannot transcode
        # JPEG 2000 for C-GET) then finds a context for it, whichever one it accepts first
        for sop_class in STORAGE_CLASSES:
            for syntax in RETRIEVED_SYNTAXES:
                self.ae.add_requested_context(sop_class, syntax)

    def __enter__(self) -> Association:
        roles = [build_role(sop_class, scp_role=True) for sop_class in STORAGE_CLASSES]
        association = self.ae.associate(
            self.peer.host,
            self.peer.port,
            ae_title=self.peer.ae_title,
            ext_neg=roles,  # type: ignore[arg-type]
            evt_handlers=[(evt.EVT_C_STORE, self._store)],
        )
        if not association.is_established:
            raise CXRXAIError(
                f"PACS {self.peer.ae_title}@{self.peer.host}:{self.peer.port} refused or did not answer the "
                "association; check its address and that it knows our AE title (--ae)"
            )
        self.association = association
        return association

    def __exit__(self, *exc_info) -> None:
        self.association.release()

    def _store(self, event) -> int:
        dataset = event.dataset
        target = _file(self.into, str(dataset.StudyInstanceUID), str(dataset.SOPInstanceUID))
        try:
            durable_write(target, event.encoded_dataset())
        except OSError:
            return 0xA700  # out of resources: the PACS reports the sub-operation failed
        return 0x0000


def _find(association: Association, query: Dataset) -> Iterator[Dataset]:
    for status, identifier in association.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        if not status:
            raise CXRXAIError("the PACS stopped answering the query (association aborted)")
        if status.Status in PENDING and identifier is not None:
            yield identifier
        elif status.Status not in (0x0000, *PENDING):
            raise CXRXAIError(f"the PACS refused the query: C-FIND status 0x{status.Status:04X}")


def _instances(
    association: Association,
    modalities: tuple[str, ...],
    classes: tuple[str, ...],
    study_instance_uid: str,
    date_from: dt.date | None,
    date_to: dt.date | None,
) -> Iterator[tuple[str, str, str]]:
    """(study, series, SOP Instance UID) of every instance of `classes` in series of `modalities`,
    study by study (one of them, or those of a study-date range, or all)."""
    studies = Dataset()
    studies.QueryRetrieveLevel = "STUDY"
    studies.StudyInstanceUID = study_instance_uid
    studies.StudyDate = _date_range(date_from, date_to)
    for study in list(_find(association, studies)):
        for modality in modalities:
            series_query = Dataset()
            series_query.QueryRetrieveLevel = "SERIES"
            series_query.StudyInstanceUID = study.StudyInstanceUID
            series_query.SeriesInstanceUID = ""
            series_query.Modality = modality
            for series in list(_find(association, series_query)):
                if str(series.get("Modality", modality)) != modality:
                    continue  # a PACS that ignores the Modality key
                instances = Dataset()
                instances.QueryRetrieveLevel = "IMAGE"
                instances.StudyInstanceUID = study.StudyInstanceUID
                instances.SeriesInstanceUID = series.SeriesInstanceUID
                instances.SOPInstanceUID = ""
                instances.SOPClassUID = ""
                for instance in list(_find(association, instances)):
                    if str(instance.get("SOPClassUID", "") or classes[0]) in classes:  # not every PACS says
                        yield (
                            str(study.StudyInstanceUID),
                            str(series.SeriesInstanceUID),
                            str(instance.SOPInstanceUID),
                        )


def retrieve_radiographs(
    peer: Peer,
    into: Path,
    calling_ae_title: str = "CXRXAI",
    study_instance_uid: str = "",
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> Retrieval:
    """The chest-capable radiographs (CR, DX) of one study, a study-date range, or all, retrieved into
    `into` (files already there are not retrieved again): what `cxrxai batch --pacs` explains."""
    retrieval = Retrieval()
    with _associate(peer, calling_ae_title, into) as association:
        matches = _instances(
            association, ("CR", "DX"), RADIOGRAPH_CLASSES, study_instance_uid, date_from, date_to
        )
        for study, series, sop in matches:
            retrieval.found += 1
            path = _file(into, study, sop)
            if path.is_file() or _get(association, study, series, sop, retrieval):
                retrieval.files.append(path)
    return retrieval


def _get(association: Association, study: str, series: str, sop: str, report: Retrieval) -> bool:
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID, query.SeriesInstanceUID, query.SOPInstanceUID = study, series, sop
    final = None
    for status, _ in association.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
        if not status:
            report.failed.append((sop, "the association was aborted during C-GET"))
            return False
        final = status
    if final is None or final.Status != 0x0000 or int(final.get("NumberOfCompletedSuboperations", 1)) < 1:
        code = "no answer" if final is None else f"0x{final.Status:04X}"
        report.failed.append((sop, f"C-GET ended with status {code}"))
        return False
    report.retrieved += 1
    return True


def _missing_objects(index: ResultsIndex) -> Iterator[tuple[str, str, str]]:
    """(study, series, SOP Instance UID) of the SEG / SC objects of indexed SRs that have no file yet."""
    missing: dict[str, list[str]] = {}
    srs: dict[str, str] = {}
    for obj in index.objects():
        if obj.kind == "SR" and obj.path:
            srs[obj.sr_sop_instance_uid] = obj.path
        elif obj.path is None:
            missing.setdefault(obj.sr_sop_instance_uid, []).append(obj.sop_instance_uid)
    for sr_uid, uids in missing.items():
        if sr_uid in srs:
            sr = dcmread(srs[sr_uid], stop_before_pixels=True)
            series_of = {uid: series for series, _, uid in evidence(sr)}
            for uid in uids:
                yield str(sr.StudyInstanceUID), series_of[uid], uid


def _date_range(date_from: dt.date | None, date_to: dt.date | None) -> str:
    if date_from is None and date_to is None:
        return ""
    start = date_from.strftime("%Y%m%d") if date_from else ""
    end = date_to.strftime("%Y%m%d") if date_to else ""
    return f"{start}-{end}"
