"""Where results come from besides Slicer's DICOM database: a folder, or the PACS the node delivers to.

The node has no query / retrieve service of its own: it sends every result to the PACS (and keeps a copy
in its results folder), so "query the PACS / our node" means the PACS, or the node's results folder.
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


def retrieve_from_pacs(
    address: str, study_instance_uid: str, into: str | Path, calling_ae_title: str
) -> list[Path]:
    """C-FIND our SRs of one study in the PACS, C-GET them with their SEG and SC objects into `into`;
    returns the retrieved SR files. Raises RuntimeError with one readable line when the PACS cannot be
    reached or refuses, or when some object could not be retrieved."""
    try:
        from dicom_node.pacs import Peer, retrieve_results
    except ImportError as exc:
        raise RuntimeError(f"querying a PACS needs pynetdicom ({exc.name} is missing)") from None
    from cxrxai.errors import CXRXAIError

    try:
        retrieval = retrieve_results(
            Peer.parse(address), Path(into), calling_ae_title, study_instance_uid, heatmaps=True
        )
    except CXRXAIError as exc:
        raise RuntimeError(str(exc)) from None
    if retrieval.failed:
        uid, why = retrieval.failed[0]
        raise RuntimeError(f"{len(retrieval.failed)} object(s) not retrieved, e.g. {uid}: {why}")
    return retrieval.files
