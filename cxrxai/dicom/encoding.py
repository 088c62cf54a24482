"""The transfer syntaxes our image objects (SEG, Secondary Capture) can be written in, by the names the
command line and `node.toml` use.

The default is Explicit VR Little Endian: every archive stores and serves it, and Orthanc as Debian ships it
(without its GDCM plugin) cannot transcode JPEG 2000, so a viewer asking Orthanc for a JPEG 2000 SEG gets
an error. JPEG 2000 lossless is there for archives and links where size matters (a heat-map page is about
a third of its uncompressed size).
"""

from __future__ import annotations

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
