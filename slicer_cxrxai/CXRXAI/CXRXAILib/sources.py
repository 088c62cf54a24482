"""Where results come from besides Slicer's DICOM database: a folder, or the PACS the node delivers to.

The node has no query / retrieve service of its own: it sends every result to the PACS (and keeps a copy
in its results folder). The module retrieves a study from the PACS with Slicer's own DICOM networking;
this file holds what that needs without Slicer: the PACS address the user types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from CXRXAILib.matching import ResultSet, read_headers, result_sets

PEER = re.compile(r"^(?P<ae>[^@\\\s]{1,16})@(?P<host>[^:@\s]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Peer:
    ae_title: str
    host: str
    port: int


def parse_peer(text: str) -> Peer:
    """`AE@host:port`, e.g. `ORTHANC@pacs.example.org:4242`; ValueError saying so otherwise."""
    match = PEER.match(text.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"PACS {text!r}: give it as AE@host:port, e.g. ORTHANC@pacs.example.org:4242")
    return Peer(match["ae"], match["host"], int(match["port"]))


def from_folder(folder: str | Path) -> list[ResultSet]:
    """Every result set in a folder (searched recursively), newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return result_sets(read_headers([folder]))
