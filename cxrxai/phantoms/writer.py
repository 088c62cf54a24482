"""Write phantom sets: DICOM (CR / DX, several transfer syntaxes, MONOCHROME1/2, 10-16 bit) and / or
PNG with a CSV in the CheXpert layout, masks as PNG, and the full ground truth as JSON.

CheXpert coding in the CSV, as the real data set has it: 1.0 present, 0.0 absent, -1.0 uncertain, blank
not mentioned. Like radiology reports, absent findings are often not mentioned (blank) and a few subtle
positives are written as uncertain; the exact truth is in ground_truth.json for evaluation.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from cxrxai.io.sop_classes import CR_IMAGE, DX_FOR_PRESENTATION
from cxrxai.labels import FINDINGS, slug
from cxrxai.phantoms.generator import Phantom
from cxrxai.samples import radiograph_dataset

CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *FINDINGS]
SYNTAXES = (None, RLELossless, JPEGLSLossless, JPEG2000Lossless)  # None: explicit VR little endian


def chexpert_label(present: int, rng: np.random.Generator) -> str:
    if present:
        return "-1.0" if rng.random() < 0.05 else "1.0"
    return "" if rng.random() < 0.5 else "0.0"


def write_phantom(phantom: Phantom, root: Path, index: int, seed: int, formats: set[str]) -> dict:
    """Write one phantom; returns its CSV row and ground-truth record."""
    rng = np.random.default_rng([seed, index, 7])
    patient_id = f"patient{index:05d}"
    relative = Path("train") / patient_id / "study1"
    folder = root / relative
    folder.mkdir(parents=True, exist_ok=True)
    view = "AP" if phantom.patient.ap else "PA"
    files = {}
    if "png" in formats:
        bits = 16 if rng.random() < 0.5 else 8
        scale = (1 << bits) - 1
        data = np.round(phantom.image * scale).astype(np.uint16 if bits == 16 else np.uint8)
        Image.fromarray(data).save(folder / "view1_frontal.png")
        files["png"] = str(relative / "view1_frontal.png")
    if "dicom" in formats:
        bits = int(rng.choice([10, 12, 14, 16]))
        photometric = "MONOCHROME1" if rng.random() < 0.4 else "MONOCHROME2"
        sop_class = DX_FOR_PRESENTATION if rng.random() < 0.5 else CR_IMAGE
        ds = radiograph_dataset(
            phantom.image,
            photometric=photometric,
            bits=bits,
            sop_class=sop_class,
            patient_name=f"PHANTOM^{patient_id.upper()}",
            patient_id=patient_id,
            uid_seed=f"cxrxai-phantom-{seed}-{index}",
            view_position=view,
        )
        syntax = SYNTAXES[int(rng.integers(len(SYNTAXES)))]
        if syntax is not None:
            ds.compress(syntax)
        ds.save_as(folder / "view1_frontal.dcm", enforce_file_format=True)
        files["dicom"] = str(relative / "view1_frontal.dcm")
    mask_folder = root / "masks" / patient_id
    mask_folder.mkdir(parents=True, exist_ok=True)
    mask_files = {}
    for name, mask in phantom.masks.items():
        path = mask_folder / f"{slug(name)}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(path)
        mask_files[name] = str(path.relative_to(root))
    row = {
        "Path": files.get("png") or files["dicom"],
        "Sex": "Female" if phantom.patient.breasts else "Male",
        "Age": str(int(rng.integers(18, 90))),
        "Frontal/Lateral": "Frontal",
        "AP/PA": view,
        **{name: chexpert_label(phantom.labels[name], rng) for name in FINDINGS},
    }
    if phantom.labels["No Finding"]:
        row["No Finding"] = "1.0"
    truth = {"files": files, "labels": phantom.labels, "masks": mask_files, "ctr": phantom.ctr, "view": view}
    return {"row": row, "truth": truth}


def write_set(records: list[dict], root: Path) -> None:
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CHEXPERT_COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow(record["row"])
    (root / "ground_truth.json").write_text(json.dumps([r["truth"] for r in records], indent=1) + "\n")
