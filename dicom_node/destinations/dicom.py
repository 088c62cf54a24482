"""DICOM peers: C-STORE every result object, one association per destination and pass.

The association offers one presentation context per SOP class and transfer syntax actually needed, each
with uncompressed as the fall-back every storage SCP accepts (PS3.5 10.1). Any status other than success
(including warnings, which mean the peer changed our object) fails the delivery with its code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from cxrxai.dicom.encoding import transcode, transfer_syntax_uid, uncompress
from dicom_node.destinations import Carries, Destination, DestinationKind, Kind, Outcome, Sending, register

if TYPE_CHECKING:
    from dicom_node.state import Delivery


@register
class DicomPeer(DestinationKind):
    name = Kind.DICOM
    carries = Carries.OBJECTS

    def check(self, destination: Destination) -> list[str]:
        problems = []
        if not 1 <= len(destination.ae_title.strip()) <= 16:
            problems.append("ae_title: must be 1-16 characters")
        if not destination.host:
            problems.append("host: required (the peer's address) for a DICOM destination")
        if not 1 <= destination.port <= 65535:
            problems.append(f"port: {destination.port} is not a TCP port")
        if destination.url:
            problems.append('url: a DICOM destination has no URL; for a webhook set kind = "webhook"')
        return problems

    def deliver(
        self, destination: Destination, deliveries: list[Delivery], sending: Sending, outcome: Outcome
    ) -> None:
        datasets = {}
        for delivery in deliveries:
            try:
                datasets[delivery.id] = read_result(Path(delivery.path or ""), destination.transfer_syntax)
            except OSError as exc:
                outcome.failed(delivery, f"result file unreadable: {exc}")
            except Exception as exc:  # this object cannot be re-encoded: record it, send the others
                outcome.failed(
                    delivery, f"not re-encoded for {destination.name}: {type(exc).__name__}: {exc}"
                )
        if not datasets:
            return
        ae = AE(ae_title=sending.ae_title)
        for sop_class, syntax in sorted({_context(ds) for ds in datasets.values()}):
            offered = list(dict.fromkeys([syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
            ae.add_requested_context(sop_class, offered)
        tls = (sending.client_tls(), destination.host) if destination.tls else None
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls)
        if not assoc.is_established:
            for delivery in deliveries:
                if delivery.id in datasets:
                    outcome.failed(delivery, f"association with {destination.name} not established")
            return
        accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts}
        try:
            for delivery in deliveries:
                if delivery.id in datasets:
                    _store(assoc, accepted, datasets[delivery.id], destination.name, delivery, outcome)
        finally:
            if assoc.is_established:
                assoc.release()


def _store(
    assoc, accepted: set[tuple[str, str]], dataset: Dataset, name: str, delivery: Delivery, outcome: Outcome
) -> None:
    """C-STORE one object over the open association and report its delivery."""
    if not assoc.is_established:
        outcome.failed(delivery, f"{name} ended the association")
        return
    if not any(sop == dataset.SOPClassUID for sop, _ in accepted):
        outcome.failed(delivery, f"{name} does not accept {dataset.SOPClassUID.name}")
        return
    try:
        if _context(dataset) not in accepted and dataset.file_meta.TransferSyntaxUID.is_compressed:
            uncompress(dataset)  # the peer takes this SOP class uncompressed only
        status = assoc.send_c_store(dataset)
    except Exception as exc:  # this object cannot go over this association: record it on the delivery
        outcome.failed(delivery, f"{type(exc).__name__}: {exc}")
        return
    code = int(status.Status) if "Status" in status else None
    if code == 0x0000:
        outcome.sent(delivery)
    else:
        outcome.failed(delivery, f"{name} answered status {_hex(code)}")


def read_result(path: Path, syntax: str) -> Dataset:
    """A result object as a destination takes it: in its configured transfer syntax, if it has one."""
    dataset = dcmread(path)
    if syntax:
        transcode(dataset, transfer_syntax_uid(syntax))
    return dataset


def _context(dataset: Dataset) -> tuple[str, str]:
    return str(dataset.SOPClassUID), str(dataset.file_meta.TransferSyntaxUID)


def _hex(code: int | None) -> str:
    return "none (no response)" if code is None else f"0x{code:04X}"
