"""The radiograph SOP classes, in one place: the file reader accepts them, the result writers copy the
modality from them, and the node routes, queries and stores by them."""

from __future__ import annotations

from pydicom.uid import UID

CR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
DX_FOR_PROCESSING = UID("1.2.840.10008.5.1.4.1.1.1.1.1")
SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")

# The projection radiographs the node explains, with their modality.
PROJECTION_RADIOGRAPHS: dict[str, str] = {CR_IMAGE: "CR", DX_FOR_PRESENTATION: "DX", DX_FOR_PROCESSING: "DX"}
# What `cxrxai explain` reads: the projection radiographs, and a digitised radiograph stored as Secondary
# Capture. Names as error messages give them.
READABLE: dict[str, str] = {
    CR_IMAGE: "CR Image",
    DX_FOR_PRESENTATION: "DX Image (for presentation)",
    DX_FOR_PROCESSING: "DX Image (for processing)",
    SECONDARY_CAPTURE: "Secondary Capture Image",
}
