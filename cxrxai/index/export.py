"""A de-identified research cohort from the results index: the findings table and our DICOM results.

What leaves: `cohort.csv` and `cohort.parquet` (one row per image and finding, as `cxrxai results query`
gives them, but with pseudonymous patient IDs and UIDs and shifted study dates) and the SRs under
`dicom/<pseudonymous patient>/`, with the heatmap SEGs and Secondary Captures when asked for.

How: dicognito (a maintained de-identifier) replaces names, IDs, UIDs, addresses and institutions and
shifts every date and date-time. One dicognito anonymizer per patient, seeded with the export key and
the patient's ID, gives each patient a consistent pseudonym and one date shift (62 to 730 days back)
for all their studies, so intervals between a patient's studies survive; the same key gives the same
pseudonyms in a later export. The table is built from the de-identified SRs themselves, so table and
DICOM always agree. On top of dicognito, free-text descriptions that a site may fill with anything
(study description, comments, histories) are removed, and so are private elements.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydicom import dcmread
from pydicom.dataset import Dataset

from cxrxai.dicom.result_objects import result_file_name
from cxrxai.errors import CXRXAIError
from cxrxai.index.database import COLUMNS, ResultsIndex, image_from_sr
from cxrxai.index.schema import Image

# Free text that source headers carry into our objects or that a PACS may add (PS3.15 Table E.1-1
# attributes that dicognito leaves as they are)
FREE_TEXT = (
    "StudyDescription", "ImageComments", "PatientComments", "AdditionalPatientHistory",
    "RequestedProcedureDescription", "PerformedProcedureStepDescription", "ReasonForTheRequestedProcedure",
    "AdmittingDiagnosesDescription", "InstitutionalDepartmentName", "ProtocolName", "MedicalAlerts",
    "Allergies", "EthnicGroup", "PatientState", "Occupation", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "CountryOfResidence", "RegionOfResidence", "IssuerOfPatientID",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "PhysiciansOfRecord",
    "RequestingPhysician", "ScheduledPerformingPhysicianName", "AcquisitionComments",
)  # fmt: skip
DEIDENTIFICATION_CODES = (  # CID 7050: what was done, so receivers can tell
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)


@dataclass
class ExportReport:
    images: int
    patients: int
    files: int
    folder: Path


def export_cohort(
    index: ResultsIndex, out: Path, key: str | None = None, heatmaps: bool = False, **filters
) -> ExportReport:
    """De-identify the images that match `filters` (those of `ResultsIndex.query`; an image is in when
    any of its findings matches) into `out`. Without `key`, a random one: pseudonyms then hold within
    this export only."""
    matches = index.query(**filters)
    selected = matches.sr_sop_instance_uid.unique().tolist()
    if not selected:
        raise CXRXAIError("no indexed results match these filters; nothing to export")
    if out.exists() and any(out.iterdir()):
        raise CXRXAIError(f"{out} is not empty; export into a new folder")
    key = key or secrets.token_hex(16)
    objects = index.objects(selected)
    missing = [o for o in objects if (o.kind == "SR" or heatmaps) and not (o.path and Path(o.path).is_file())]
    if missing:
        first = missing[0]
        raise CXRXAIError(
            f"{len(missing)} result file(s) are not on disk (e.g. {first.kind} {first.sop_instance_uid}); "
            "ingest the folder that holds them, or `cxrxai results ingest --pacs ... --heatmaps`"
        )
    by_sr: dict[str, list[str]] = {}
    for obj in objects:
        if obj.kind == "SR" or heatmaps:
            by_sr.setdefault(obj.sr_sop_instance_uid, []).append(str(obj.path))
    seconds = dict(matches[["sr_sop_instance_uid", "processing_seconds"]].values)
    anonymizers: dict[str, object] = {}
    images: list[Image] = []
    files = 0
    for sr_uid, paths in by_sr.items():
        datasets = [dcmread(path) for path in paths]
        patient = str(datasets[0].get("PatientID", "")) or f"study:{datasets[0].StudyInstanceUID}"
        anonymizer = anonymizers.setdefault(patient, _anonymizer(key, patient))
        for dataset in datasets:
            deidentify(dataset, anonymizer)
            folder = out / "dicom" / str(dataset.PatientID)
            folder.mkdir(parents=True, exist_ok=True)
            dataset.save_as(folder / result_file_name(dataset), enforce_file_format=True)
            files += 1
            if dataset.Modality == "SR":
                images.append(image_from_sr(dataset, "", processing_seconds=seconds.get(sr_uid)))
    table = _table(images)
    table.to_csv(out / "cohort.csv", index=False)
    table.to_parquet(out / "cohort.parquet", index=False)
    return ExportReport(images=len(images), patients=len(anonymizers), files=files, folder=out)


def deidentify(dataset: Dataset, anonymizer) -> None:
    """De-identify one dataset in place with the patient's anonymizer, then drop free text and private
    elements and record what was done."""
    anonymizer.anonymize(dataset)
    dataset.remove_private_tags()

    def drop_free_text(ds: Dataset, element) -> None:
        if element.keyword in FREE_TEXT:
            del ds[element.tag]

    dataset.walk(drop_free_text)
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = "CXR-XAI export: dicognito, free text and private removed"  # LO: 64
    dataset.DeidentificationMethodCodeSequence = [
        _code(value, meaning) for value, meaning in DEIDENTIFICATION_CODES
    ]


def _anonymizer(key: str, patient: str):
    from dicognito.anonymizer import Anonymizer

    return Anonymizer(seed=f"{key}/{patient}")


def _code(value: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
    return code


def _table(images: Iterable[Image]) -> pd.DataFrame:
    rows = [
        {
            **{column: getattr(image, column) for column in COLUMNS[: COLUMNS.index("finding")]},
            "finding": finding.name,
            "probability": finding.probability,
            "threshold": finding.threshold,
            "present": finding.present,
        }
        for image in images
        for finding in image.findings
    ]
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["patient_id", "study_date", "sop_instance_uid"])
