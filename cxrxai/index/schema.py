"""Tables of the results index (SQLAlchemy 2 declarative models).

Changing a table here needs a migration in `cxrxai/index/migrations/versions/` too: existing index
databases (SQLite files, shared PostgreSQL servers) are upgraded by Alembic when they are opened.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, DateTime, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UID = String(64)


class Base(DeclarativeBase):
    pass


class Image(Base):
    """One explained radiograph by one model, keyed by its SR (whose UID derives from the source image
    and the bundle hash, so the same image explained by two models gives two rows)."""

    __tablename__ = "images"

    sr_sop_instance_uid: Mapped[str] = mapped_column(UID, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, index=True)  # the source radiograph
    series_instance_uid: Mapped[str | None] = mapped_column(UID)  # the source radiograph's series
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    study_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    view_position: Mapped[str | None] = mapped_column(String(16))  # PA, AP, LL, ...
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64), index=True)
    model_hash: Mapped[str] = mapped_column(String(80))
    cardiothoracic_ratio: Mapped[float | None] = mapped_column(Float)
    processing_seconds: Mapped[float | None] = mapped_column(Float)  # known when the node indexed it
    source: Mapped[str] = mapped_column(Text)  # where the SR was ingested from
    ingested_at: Mapped[dt.datetime] = mapped_column(DateTime)
    findings: Mapped[list[Finding]] = relationship(back_populates="image", cascade="all, delete-orphan")
    objects: Mapped[list[ResultObject]] = relationship(back_populates="image", cascade="all, delete-orphan")


class Finding(Base):
    __tablename__ = "findings"
    __table_args__ = (Index("findings_by_name_probability", "name", "probability"),)

    sr_sop_instance_uid: Mapped[str] = mapped_column(
        ForeignKey("images.sr_sop_instance_uid", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    probability: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    present: Mapped[bool]
    image: Mapped[Image] = relationship(back_populates="findings")


class ResultObject(Base):
    """One DICOM result object of an image (the SR itself, its SEGs and Secondary Captures), with the
    file that holds it once one was seen, so cohorts can be exported with their heatmaps."""

    __tablename__ = "result_objects"

    sop_instance_uid: Mapped[str] = mapped_column(UID, primary_key=True)
    sr_sop_instance_uid: Mapped[str] = mapped_column(
        ForeignKey("images.sr_sop_instance_uid", ondelete="CASCADE"), index=True
    )
    sop_class_uid: Mapped[str] = mapped_column(UID)
    kind: Mapped[str] = mapped_column(String(8))  # SR, SEG or SC (Secondary Capture)
    path: Mapped[str | None] = mapped_column(Text)
    image: Mapped[Image] = relationship(back_populates="objects")
