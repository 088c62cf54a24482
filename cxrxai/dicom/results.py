"""Write every DICOM result object of one explained radiograph into a folder."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from cxrxai.dicom.common import Device
from cxrxai.dicom.sr import build_sr
from cxrxai.results import Explanation


def device_of(explanation: Explanation) -> Device:
    model = explanation.model
    return Device(
        name=str(model["name"]), version=str(model["version"]), content_hash=str(model["content_hash"])
    )


def write_dicom_results(explanation: Explanation, source: Dataset, folder: str | Path) -> list[Path]:
    """The SR (TID 1500) for now; file names are the SOP Instance UIDs, so re-runs overwrite."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sr = build_sr(source, explanation.findings, explanation.ctr, device_of(explanation))
    path = folder / f"SR-{sr.SOPInstanceUID}.dcm"
    sr.save_as(path, enforce_file_format=True)
    return [path]
