"""Where results come from besides Slicer's DICOM database: a folder, or the PACS the node delivers to.

The node has no query / retrieve service of its own: it sends every result to the PACS (and keeps a copy
in its results folder). The module retrieves a study from the PACS with Slicer's own DICOM networking;
its address is parsed by `cxrxai.dicom.peer.Peer.parse`, as the node parses it.
"""

from __future__ import annotations

from pathlib import Path

from CXRXAILib.matching import ResultSet, read_headers, result_sets


def from_folder(folder: str | Path) -> list[ResultSet]:
    """Every result set in a folder (searched recursively), newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return result_sets(read_headers([folder]))
