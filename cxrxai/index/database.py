"""ResultsIndex: ingest our SR results (idempotently) and query them.

`url` is a SQLAlchemy database URL (`postgresql+psycopg://...` for a shared server) or a plain file path
for SQLite. Ingest reads each SR with `cxrxai.dicom.sr.read_sr` (pydicom only) plus the identifying
header attributes; files that are not our findings SR are skipped with the reason. Re-ingesting an SR
already indexed changes nothing, so folders can be ingested again as they grow. The SEG and Secondary
Capture files of an indexed SR (its evidence) are attached to it when they are met, in any order.

Every database is upgraded to the newest schema when it is opened (Alembic, `migrations/`); a SQLite
file made before migrations existed is recognised as the first revision.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy import Engine, create_engine, inspect, literal_column, select
from sqlalchemy.orm import Session

from cxrxai.dicom.sr import (
    DEVICE_SERIAL_NUMBER,
    IMAGE_VIEW,
    VIEW_CODES,
    SRReadError,
    content_values,
    evidence,
    read_sr,
)
from cxrxai.errors import CXRXAIError
from cxrxai.index.schema import Finding, Image, ResultObject
from cxrxai.labels import FINDINGS

MODALITY = "121139"  # DCM: Modality, in the image library entry of the source
VIEWS = {code.value: name for name, code in VIEW_CODES.items()}
MIGRATIONS = Path(__file__).with_name("migrations")
COLUMNS = ["study_instance_uid", "series_instance_uid", "sop_instance_uid", "sr_sop_instance_uid",
           "patient_id", "study_date", "modality", "view_position", "model_name", "model_version",
           "model_hash", "cardiothoracic_ratio", "processing_seconds", "finding", "probability", "threshold",
           "present"]  # fmt: skip


@dataclass
class IngestReport:
    added: int = 0
    unchanged: int = 0
    attached: int = 0  # SEG / SC files of indexed SRs whose file is now known
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)


class ResultsIndex:
    def __init__(self, url: str | Path) -> None:
        text = str(url)
        self.url = text if "://" in text else f"sqlite:///{Path(text).resolve()}"
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(self.url)
        upgrade(self.engine)

    # -- ingest ------------------------------------------------------------------------------------

    def ingest(self, paths: Iterable[str | Path]) -> IngestReport:
        """Index every SR file under `paths` (files or folders, searched recursively) and attach the
        SEG / SC files of indexed SRs."""
        report = IngestReport()
        others: dict[str, tuple[str, str]] = {}  # SOP Instance UID -> (file, why it is not an SR of ours)
        with Session(self.engine) as session:
            for path in _files(paths):
                try:
                    dataset = dcmread(path, stop_before_pixels=True)
                except (InvalidDicomError, OSError) as exc:
                    report.skipped.append((str(path), f"not DICOM ({exc.__class__.__name__})"))
                    continue
                try:
                    image = image_from_sr(dataset, str(path))
                except SRReadError as exc:
                    others[str(dataset.get("SOPInstanceUID", ""))] = (str(path), str(exc))
                    continue
                if self._add(session, image):
                    report.added += 1
                else:
                    report.unchanged += 1
            for uid, (file, why) in others.items():
                known = session.get(ResultObject, uid) if uid else None
                if known is None:
                    report.skipped.append((file, why))
                elif known.path != file:
                    known.path = file
                    session.commit()
                    report.attached += 1
        return report

    def add(self, image: Image) -> bool:
        """Index one image with its findings and result objects (the node's way in); False when its SR
        was indexed already, in which case only the object files are brought up to date."""
        with Session(self.engine) as session:
            return self._add(session, image)

    @staticmethod
    def _add(session: Session, image: Image) -> bool:
        existing = session.get(Image, image.sr_sop_instance_uid)
        if existing is None:
            session.add(image)
            session.commit()
            return True
        known = {o.sop_instance_uid: o for o in existing.objects}
        for obj in image.objects:
            if obj.path and obj.sop_instance_uid in known and known[obj.sop_instance_uid].path != obj.path:
                known[obj.sop_instance_uid].path = obj.path
        session.commit()
        return False

    def has(self, sr_sop_instance_uid: str) -> bool:
        with Session(self.engine) as session:
            return session.get(Image, sr_sop_instance_uid) is not None

    def objects(self, sr_sop_instance_uids: Iterable[str] | None = None) -> list[ResultObject]:
        """The result objects (SR, SEG, SC) of the given SRs (default: of all), detached from the database."""
        statement = select(ResultObject).order_by(
            ResultObject.sr_sop_instance_uid, ResultObject.kind, ResultObject.sop_instance_uid
        )
        if sr_sop_instance_uids is not None:
            statement = statement.where(ResultObject.sr_sop_instance_uid.in_(list(sr_sop_instance_uids)))
        with Session(self.engine, expire_on_commit=False) as session:
            rows = session.scalars(statement).all()
            session.expunge_all()
            return list(rows)

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
            Image.study_instance_uid, Image.series_instance_uid, Image.sop_instance_uid,
            Image.sr_sop_instance_uid, Image.patient_id, Image.study_date, Image.modality,
            Image.view_position, Image.model_name, Image.model_version, Image.model_hash,
            Image.cardiothoracic_ratio, Image.processing_seconds, Finding.name.label("finding"),
            Finding.probability, Finding.threshold, Finding.present,
        ).join(Finding)  # fmt: skip
        study_date: Any = Image.study_date  # the column, or an expression of it
        if self.engine.dialect.name == "sqlite" and (min_probability, max_probability) != (None, None):
            # `+study_date`: SQLite would otherwise scan the date index (half the images for a year) and
            # probe each image's findings; from the (name, probability) index it is 100x faster at 100k
            # images (bench/bench_index.py). PostgreSQL's statistics choose well on their own.
            study_date = literal_column("+images.study_date", type_=Image.study_date.type)
        conditions = [  # (value, condition built only when the value is given)
            (finding, lambda: Finding.name == finding),
            (min_probability, lambda: Finding.probability >= min_probability),
            (max_probability, lambda: Finding.probability <= max_probability),
            (decision, lambda: Finding.present.is_(decision)),
            (date_from, lambda: study_date >= date_from),
            (date_to, lambda: study_date <= date_to),
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


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema revision (creating it when empty)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        tables = inspect(connection)
        if tables.has_table("images") and not tables.has_table("alembic_version"):
            command.stamp(config, "0001")  # made by create_all before the index had migrations
        command.upgrade(config, "head")


def image_from_sr(dataset: Dataset, source: str, processing_seconds: float | None = None) -> Image:
    """The index rows of one of our findings SRs (raises SRReadError for any other object). `source` is
    the SR's file (or where it came from); the SEG / SC it lists as evidence become result objects."""
    found = read_sr(dataset)
    texts, codes = content_values(dataset)
    date = str(dataset.get("StudyDate", "") or "")
    listed = evidence(dataset)
    image = Image(
        sr_sop_instance_uid=str(dataset.SOPInstanceUID),
        sop_instance_uid=found.source_sop_instance_uid,
        series_instance_uid=next(
            (series for series, _, uid in listed if uid == found.source_sop_instance_uid), None
        ),
        study_instance_uid=str(dataset.StudyInstanceUID),
        patient_id=str(dataset.get("PatientID", "") or "") or None,
        study_date=dt.datetime.strptime(date, "%Y%m%d").date() if len(date) == 8 else None,
        modality=codes.get(MODALITY),
        view_position=VIEWS.get(codes.get(IMAGE_VIEW.value, "")),
        model_name=found.algorithm_name,
        model_version=found.algorithm_version,
        model_hash=texts.get(DEVICE_SERIAL_NUMBER, ""),
        cardiothoracic_ratio=found.ctr,
        processing_seconds=processing_seconds,
        source=source,
        ingested_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
    )
    image.findings = [
        Finding(name=f.name, probability=f.probability, threshold=f.threshold, present=found.present[f.name])
        for f in found.findings
    ]
    image.objects = [
        ResultObject(sop_instance_uid=str(dataset.SOPInstanceUID), sop_class_uid=str(dataset.SOPClassUID),
                     kind="SR", path=source if Path(source).is_file() else None)
    ] + [
        ResultObject(sop_instance_uid=uid, sop_class_uid=sop_class, kind=RESULT_CLASSES[sop_class])
        for _, sop_class, uid in listed
        if sop_class in RESULT_CLASSES
    ]  # fmt: skip
    return image


RESULT_CLASSES = {  # SOP classes of the result objects an SR lists as evidence
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
    "1.2.840.10008.5.1.4.1.1.7": "SC",
}


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
