"""Sample chest radiographs as DICOM or PNG, for the demo and for input tests.

`chest_image` draws simple geometric chests (lungs, heart, spine, ribs as ellipses and bands) with known
geometry, which lets the input tests write every DICOM variant the reader must handle: MONOCHROME1/2,
8-16 bit, rescale and window, and every transfer syntax pydicom can encode. The demo's own
inputs are anatomical phantoms (`cxrxai.phantoms.samples`).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)

from cxrxai.io.sop_classes import CR_IMAGE, DX_FOR_PRESENTATION


def chest_image(rows: int = 320, columns: int = 280, seed: int = 0) -> np.ndarray:
    """A float image in [0, 1] (bright = dense): dark lungs, bright heart, spine, ribs, soft tissue."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    yn, xn = y / rows, x / columns
    image = 0.55 + 0.1 * rng.standard_normal((rows, columns)).astype(np.float32) * 0.2

    def ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
        return ((yn - cy) / ry) ** 2 + ((xn - cx) / rx) ** 2 <= 1.0

    right_lung, left_lung = ellipse(0.48, 0.30, 0.30, 0.14), ellipse(0.48, 0.70, 0.30, 0.14)
    heart = ellipse(0.62, 0.55, 0.13, 0.16)
    image[right_lung | left_lung] -= 0.35
    image[heart] = 0.75
    image[np.abs(xn - 0.5) < 0.04] = 0.85  # spine
    for k in range(8):  # ribs as bright bands across the lungs
        band = np.abs(yn - (0.22 + 0.075 * k) - 0.05 * np.abs(xn - 0.5)) < 0.008
        image[band & (right_lung | left_lung)] += 0.15
    return np.clip(image, 0.0, 1.0)


def radiograph_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits: int = 16,
    sop_class: UID = CR_IMAGE,
    patient_name: str = "PHANTOM^CHEST",
    patient_id: str = "CXRXAI-0001",
    study_uid: str | None = None,
    pixel_spacing: tuple[float, float] | None = (0.2, 0.2),
    uid_seed: str | None = None,
    view_position: str = "PA",
) -> Dataset:
    """A single-frame greyscale radiograph dataset; `pixels` in [0, 1] with bright = dense.

    MONOCHROME1 stores the inverted values, as a CR reader would receive them. With `uid_seed` the UIDs are
    derived from it (reproducible files); otherwise they are new.
    """

    def uid(role: str) -> UID:
        return generate_uid(entropy_srcs=[uid_seed, role]) if uid_seed else generate_uid()

    if not 8 <= bits <= 16:
        raise ValueError(f"bits stored must be 8 to 16, got {bits}")
    maximum = (1 << bits) - 1
    values = np.clip(pixels, 0, 1)
    if photometric == "MONOCHROME1":
        values = 1.0 - values
    stored = np.round(values * maximum).astype(np.uint8 if bits == 8 else np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid("instance")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    now = dt.datetime(2026, 1, 15, 9, 30)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid or uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC0001"
    ds.ReferringPhysicianName = ""
    ds.Modality = "DX" if sop_class == DX_FOR_PRESENTATION else "CR"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view_position
    ds.PatientOrientation = ["L", "F"]
    ds.Manufacturer = "CXR-XAI samples"
    if sop_class == DX_FOR_PRESENTATION:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.ImagerPixelSpacing = list(pixel_spacing or (0.2, 0.2))
        ds.DetectorType = "DIRECT"
        ds.BurnedInAnnotation = "NO"
        ds.PixelIntensityRelationship = "LIN"
        ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME2" else -1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"
        ds.LossyImageCompression = "00"
        # DX Anatomy Imaged, DX Positioning, DX Image, Acquisition Context (PS3.3 C.8.11): a chest PA / AP
        ds.ImageLaterality = "U"
        ds.AnatomicRegionSequence = [CodedConcept("816094009", "SCT", "Chest")]
        view = (
            ("272479007", "postero-anterior") if view_position == "PA" else ("399348003", "antero-posterior")
        )
        ds.ViewCodeSequence = [CodedConcept(view[0], "SCT", view[1])]
        ds.PositionerType = ""
        ds.AcquisitionContextSequence = []
        ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"
        ds.WindowCenter = 1 << (bits - 1)
        ds.WindowWidth = 1 << bits
    elif pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.tobytes()
    return ds
