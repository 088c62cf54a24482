"""The demo's sample radiographs: anatomical phantoms (the default model's domain) with chosen findings,
written as DICOM CR the way a department's PACS would send them."""

from __future__ import annotations

from pathlib import Path

from cxrxai.phantoms.generator import make_phantom
from cxrxai.samples import radiograph_dataset

SAMPLE_FINDINGS: tuple[tuple[str, ...], ...] = (
    ("No Finding",),
    ("Cardiomegaly", "Pleural Effusion"),
    ("Pneumothorax",),
    ("Support Devices", "Consolidation"),
)


def write_samples(folder: str | Path, count: int = 2, seed: int = 0) -> list[Path]:
    """Write `count` (at most 4) sample chest radiographs as DICOM CR (MONOCHROME1, 16 bit, 512 rows):
    anatomical phantoms, the default model's domain, with the findings of SAMPLE_FINDINGS in turn (a
    normal chest, cardiomegaly with effusion, ...), so the demo shows what the model does in-domain."""
    if not 1 <= count <= len(SAMPLE_FINDINGS):
        raise ValueError(f"count must be 1 to {len(SAMPLE_FINDINGS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    index = 0
    for i, wanted in enumerate(SAMPLE_FINDINGS[:count]):
        while True:  # the first phantom of the seed with exactly these findings (deterministic)
            phantom = make_phantom(seed, index, rows=512)
            index += 1
            present = {name for name, value in phantom.labels.items() if value}
            if present - {"Lung Opacity"} == set(wanted):
                break
        ds = radiograph_dataset(
            phantom.image,
            photometric="MONOCHROME1",
            patient_id=f"CXRXAI-{i + 1:04d}",
            uid_seed=f"cxrxai-sample-{seed}-{i}",
            view_position="AP" if phantom.patient.ap else "PA",
        )
        ds.StudyDescription = f"Phantom chest radiograph ({', '.join(wanted)})"
        path = folder / f"sample-{i + 1}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written
