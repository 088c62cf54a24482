"""A DICOM peer as people write it, `AE@host:port`: parsed the same for the node's PACS commands and the
3D Slicer module's "Query PACS". Parsing only: the core opens no connection."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cxrxai.errors import CXRXAIError

PEER = re.compile(r"^(?P<ae>[^@\\\s]{1,16})@(?P<host>[^:@\s]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Peer:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        """`AE@host:port`, e.g. `ORTHANC@pacs.example.org:4242`; CXRXAIError saying so otherwise."""
        match = PEER.match(text.strip())
        if match is None or not 0 < int(match["port"]) < 65536:
            raise CXRXAIError(f"PACS {text!r}: give it as AE@host:port, e.g. ORTHANC@pacs.example.org:4242")
        return cls(match["ae"], match["host"], int(match["port"]))
