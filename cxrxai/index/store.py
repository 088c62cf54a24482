"""ResultsIndex: ingest our SR results (idempotently) and query them.

`url` is a SQLAlchemy database URL (`postgresql+psycopg://...` for a shared server) or a plain file path
for SQLite. Ingest reads each SR with `cxrxai.dicom.sr.read_sr` (pydicom only) plus the identifying
header attributes; files that are not our findings SR are skipped with the reason. Re-ingesting an SR
already indexed changes nothing, so folders can be ingested again as they grow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from cxrxai.dicom.sr import SRReadError, read_sr
from cxrxai.errors import CXRXAIError
from cxrxai.index.schema import Base, Finding, Image
from cxrxai.labels import FINDINGS

DEVICE_SERIAL_NUMBER = "121016"  # DCM: Device Observer Serial Number (our bundle hash)
MODALITY = "121139"  # DCM: Modality, in the image library entry of the source
COLUMNS = ["study_instance_uid", "sop_instance_uid", "patient_id", "study_date", "modality", "model_name",
           "model_version", "model_hash", "cardiothoracic_ratio", "finding", "probability", "threshold",
           "present"]  # fmt: skip


@dataclass
class IngestReport:
    added: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)


class ResultsIndex:
    def __init__(self, url: str | Path) -> None:
        text = str(url)
        self.url = text if "://" in text else f"sqlite:///{Path(text).resolve()}"
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(self.url)
        Base.metadata.create_all(self.engine)

    # -- ingest ------------------------------------------------------------------------------------

    def ingest(self, paths: Iterable[str | Path]) -> IngestReport:
        """Index every SR file under `paths` (files or folders, searched recursively)."""
        report = IngestReport()
        with Session(self.engine) as session:
            for path in _files(paths):
                try:
                    dataset = dcmread(path, force=False)
                except (InvalidDicomError, OSError) as exc:
                    report.skipped.append((str(path), f"not DICOM ({exc.__class__.__name__})"))
                    continue
                try:
                    image = image_from_sr(dataset, str(path))
                except SRReadError as exc:
                    report.skipped.append((str(path), str(exc)))
                    continue
                if session.get(Image, image.sr_sop_instance_uid) is not None:
                    report.unchanged += 1
                    continue
                session.add(image)
                session.commit()
                report.added += 1
        return report

    # -- query -------------------------------------------------------------------------------------

    def query(
        self,
        finding: str | None = None,
        min_probability: float | None = None,
        max_probability: float | None = None,
        decision: bool | None = None,
        date_from: dt.date | None = None,
        date_to: dt.date | None = None,
        model_version: str | None = None,
        study_instance_uid: str | None = None,
        patient_id: str | None = None,
        sort: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """One row per (image, finding) that matches every given filter, as a DataFrame."""
        if finding is not None and finding not in FINDINGS:
            raise CXRXAIError(f"unknown finding {finding!r}; one of: {', '.join(FINDINGS)}")
        if sort is not None and sort not in COLUMNS:
            raise CXRXAIError(f"cannot sort by {sort!r}; one of: {', '.join(COLUMNS)}")
        statement = select(
            Image.study_instance_uid, Image.sop_instance_uid, Image.patient_id, Image.study_date,
            Image.modality, Image.model_name, Image.model_version, Image.model_hash,
            Image.cardiothoracic_ratio, Finding.name.label("finding"), Finding.probability, Finding.threshold,
            Finding.present,
        ).join(Finding)  # fmt: skip
        conditions = [  # (value, condition built only when the value is given)
            (finding, lambda: Finding.name == finding),
            (min_probability, lambda: Finding.probability >= min_probability),
            (max_probability, lambda: Finding.probability <= max_probability),
            (decision, lambda: Finding.present.is_(decision)),
            (date_from, lambda: Image.study_date >= date_from),
            (date_to, lambda: Image.study_date <= date_to),
            (model_version, lambda: Image.model_version == model_version),
            (study_instance_uid, lambda: Image.study_instance_uid == study_instance_uid),
            (patient_id, lambda: Image.patient_id == patient_id),
        ]
        for value, condition in conditions:
            if value is not None:
                statement = statement.where(condition())
        order = sort or "study_date"
        column = statement.selected_columns[order]
        statement = statement.order_by(
            column.desc() if descending else column, Image.sop_instance_uid, Image.model_hash, Finding.name
        )  # a total order: every database returns the same rows in the same order
        if limit is not None:
            statement = statement.limit(limit)
        with self.engine.connect() as connection:
            frame = pd.read_sql(statement, connection)
        return frame[COLUMNS]


def image_from_sr(dataset: Dataset, source: str) -> Image:
    """The index rows of one of our findings SRs (raises SRReadError for any other object)."""
    found = read_sr(dataset)
    texts, codes = _content_values(dataset)
    date = str(dataset.get("StudyDate", "") or "")
    image = Image(
        sr_sop_instance_uid=str(dataset.SOPInstanceUID),
        sop_instance_uid=found.source_sop_instance_uid,
        study_instance_uid=str(dataset.StudyInstanceUID),
        patient_id=str(dataset.get("PatientID", "") or "") or None,
        study_date=dt.datetime.strptime(date, "%Y%m%d").date() if len(date) == 8 else None,
        modality=codes.get(MODALITY),
        model_name=found.algorithm_name,
        model_version=found.algorithm_version,
        model_hash=texts.get(DEVICE_SERIAL_NUMBER, ""),
        cardiothoracic_ratio=found.ctr,
        source=source,
        ingested_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
    )
    image.findings = [
        Finding(name=f.name, probability=f.probability, threshold=f.threshold, present=found.present[f.name])
        for f in found.findings
    ]
    return image


def _content_values(dataset: Dataset) -> tuple[dict[str, str], dict[str, str]]:
    """TEXT values and CODE values of the content tree, by concept code (first occurrence)."""
    texts: dict[str, str] = {}
    codes: dict[str, str] = {}
    stack = list(dataset.get("ContentSequence", []))
    while stack:
        item = stack.pop(0)
        concept = item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else None
        if concept and item.get("ValueType") == "TEXT":
            texts.setdefault(str(concept), str(item.TextValue))
        elif concept and item.get("ValueType") == "CODE":
            codes.setdefault(str(concept), str(item.ConceptCodeSequence[0].CodeValue))
        stack.extend(item.get("ContentSequence", []))
    return texts, codes


def _files(paths: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise CXRXAIError(f"{path}: no such file or folder")
    return found
