"""The transfer syntaxes our image objects (SEG, Secondary Capture) can be written in, by the names the
command line and `node.toml` use, and re-encoding an object in another one (the node sends each
destination the syntax it is configured for).

The default is Explicit VR Little Endian: every archive stores and serves it, and Orthanc as Debian ships it
(without its GDCM plugin) cannot transcode JPEG 2000, so a viewer asking Orthanc for a JPEG 2000 SEG gets
an error. JPEG 2000 lossless is there for archives and links where size matters (a heat-map page is about
a third of its uncompressed size).
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pack_bits
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless

from cxrxai.errors import CXRXAIError

TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit-little-endian": ExplicitVRLittleEndian,
    "jpeg2000-lossless": JPEG2000Lossless,
}
DEFAULT_TRANSFER_SYNTAX = "explicit-little-endian"


def transfer_syntax_uid(name: str) -> UID:
    """The UID for a name in TRANSFER_SYNTAXES (or one of their UIDs given as is)."""
    if name in TRANSFER_SYNTAXES:
        return TRANSFER_SYNTAXES[name]
    if name in TRANSFER_SYNTAXES.values():
        return UID(name)
    raise CXRXAIError(f"transfer syntax {name!r}: use one of {', '.join(TRANSFER_SYNTAXES)}")


def transcode(dataset: Dataset, syntax: str) -> None:
    """Re-encode the pixel data of one of our objects in `syntax` (a UID of TRANSFER_SYNTAXES), keeping
    its UIDs; an object without pixel data (SR, presentation state) or already in `syntax` is left as is.

    JPEG 2000 goes through highdicom's frame encoder, which also encodes 1-bit (BINARY SEG) frames;
    pydicom's `compress` refuses those.
    """
    current = dataset.file_meta.TransferSyntaxUID
    if "PixelData" not in dataset or current == syntax:
        return
    if syntax == ExplicitVRLittleEndian:
        uncompress(dataset)
    elif syntax == JPEG2000Lossless:
        _to_jpeg2000_lossless(dataset)
    else:
        raise CXRXAIError(f"transfer syntax {syntax}: use one of {', '.join(TRANSFER_SYNTAXES)}")


def uncompress(dataset: Dataset) -> None:
    """Re-encode a compressed object in Explicit VR Little Endian, keeping its UIDs.

    pydicom's decompress() leaves 1-bit data (BINARY SEG) one byte per pixel while Bits Allocated stays
    1, which is invalid, so those frames are packed again, eight pixels per byte (PS3.5 8.1.1).
    """
    if dataset.get("BitsAllocated") == 1:
        frames = dataset.pixel_array
        dataset.PixelData = pack_bits(frames.ravel())
        dataset["PixelData"].VR = "OB"
        dataset["PixelData"].is_undefined_length = False
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        dataset.decompress(generate_instance_uid=False)


def _to_jpeg2000_lossless(dataset: Dataset) -> None:
    if dataset.file_meta.TransferSyntaxUID.is_compressed:
        uncompress(dataset)
    frames = dataset.pixel_array
    if int(dataset.get("NumberOfFrames", 1)) == 1:
        frames = frames[None]
    colour = int(dataset.SamplesPerPixel) == 3
    photometric = "YBR_RCT" if colour else str(dataset.PhotometricInterpretation)
    encoded = [
        hd.frame.encode_frame(
            np.ascontiguousarray(frame),
            JPEG2000Lossless,
            int(dataset.BitsAllocated),
            int(dataset.BitsStored),
            photometric,
            int(dataset.PixelRepresentation),
            0 if colour else None,
        )
        for frame in frames
    ]
    dataset.PixelData = encapsulate(encoded)
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    dataset.PhotometricInterpretation = photometric
    if colour:
        dataset.PlanarConfiguration = 0
    dataset.file_meta.TransferSyntaxUID = JPEG2000Lossless

