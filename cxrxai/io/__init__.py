"""Radiograph input: DICOM CR / DX / Secondary Capture and PNG / JPEG research images (no torch needed)."""

from cxrxai.io.radiograph import ACCEPTED, Radiograph, read_radiograph

__all__ = ["ACCEPTED", "Radiograph", "read_radiograph"]
