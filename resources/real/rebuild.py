"""Rebuild `pa-chest-wg04-rg1.dcm` from the NEMA WG04 test image RG1 (CR, PA chest, 1955 x 1841, 15 bit).

Source: `data_store/data/RG1_UNCR.dcm` in the source distribution of the package pydicom-data, version 1.0.0
(MIT licence), fetched with `pip download --no-deps --no-binary :all: pydicom-data==1.0.0` and unpacked.
It is the uncompressed predecessor of the WG04 compression set's RG1 (Philips Thoravision selenium-drum
chest radiograph, de-identified as CompressedSamples^RG1 by NEMA DICOM Working Group 4).

Usage: python resources/real/rebuild.py RG1_UNCR.dcm resources/real/pa-chest-wg04-rg1.dcm

4 x 4 area averaging (488 x 460 pixels, ~0.45 MB): still far above the 128 px the default model reads,
small enough for the repository. The result is a derived CR image with its own, deterministic UIDs.
"""

from __future__ import annotations

import sys

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

FACTOR = 4


def rebuild(source: str, target: str) -> None:
    ds = pydicom.dcmread(source)
    pixels = ds.pixel_array.astype(np.float64)
    rows, columns = (pixels.shape[0] // FACTOR) * FACTOR, (pixels.shape[1] // FACTOR) * FACTOR
    small = pixels[:rows, :columns].reshape(rows // FACTOR, FACTOR, columns // FACTOR, FACTOR).mean((1, 3))
    ds.PixelData = np.round(small).astype(np.uint16).tobytes()
    ds.Rows, ds.Columns = small.shape
    original = ds.SOPInstanceUID
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[original, "cxrxai 4x4 area average"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[ds.SeriesInstanceUID, "cxrxai 4x4 area average"])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = f"{FACTOR} x {FACTOR} area average of NEMA WG04 RG1_UNCR (pydicom-data 1.0.0)"
    if "PixelSpacing" in ds:  # the source's is 0\0, which is invalid; the true spacing is not recorded
        del ds.PixelSpacing
    ds.save_as(target, enforce_file_format=True)


if __name__ == "__main__":
    rebuild(sys.argv[1], sys.argv[2])
