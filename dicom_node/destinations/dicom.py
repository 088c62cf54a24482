"""DICOM peers: C-STORE every result object, one association per destination and pass.

The association offers one presentation context per SOP class and transfer syntax actually needed, each
with uncompressed as the fall-back every storage SCP accepts (PS3.5 10.1). Any status other than success
(including warnings, which mean the peer changed our object) fails the delivery with its code.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config

from cxrxai.dicom.encoding import transcode, transfer_syntax_uid, uncompress
from dicom_node.destinations import Carries, Destination, DestinationKind, Kind, Outcome, Sending, register

if TYPE_CHECKING:
    from dicom_node.state import Delivery

# `send_c_store(path)` sends the file's encoded dataset as it is, in chunks, instead of decoding it first
# (pynetdicom's documented switch; it changes nothing for datasets passed decoded)
_config.STORE_SEND_CHUNKED_DATASET = True


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
        outgoing: dict[int, Outgoing] = {}
        for delivery in deliveries:
            try:
                outgoing[delivery.id] = Outgoing.of(Path(delivery.path or ""), destination.transfer_syntax)
            except OSError as exc:
                outcome.failed(delivery, f"result file unreadable: {exc}")
            except Exception as exc:  # this object cannot be re-encoded: record it, send the others
                outcome.failed(
                    delivery, f"not re-encoded for {destination.name}: {type(exc).__name__}: {exc}"
                )
        if not outgoing:
            return
        ae = AE(ae_title=sending.ae_title)
        for sop_class, syntax in sorted({item.context for item in outgoing.values()}):
            offered = list(dict.fromkeys([syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
            ae.add_requested_context(sop_class, offered)
        tls = (sending.client_tls(), destination.host) if destination.tls else None
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls)
        if not assoc.is_established:
            for delivery in deliveries:
                if delivery.id in outgoing:
                    outcome.failed(delivery, f"association with {destination.name} not established")
            return
        _no_delay(assoc)
        accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts}
        try:
            for delivery in deliveries:
                if delivery.id in outgoing:
                    _store(assoc, accepted, outgoing[delivery.id], destination.name, delivery, outcome)
        finally:
            if assoc.is_established:
                assoc.release()


@dataclass(frozen=True)
class Outgoing:
    """One result file on its way: its SOP class and transfer syntax from the file meta, and the decoded
    dataset only when the destination wants another transfer syntax. A file the peer takes as it is goes
    out from disk as written (pynetdicom's chunked sending), neither decoded nor encoded again: pydicom
    takes about 40 ms of the node's CPU to encode an SR of ten findings."""

    path: Path
    sop_class: str
    syntax: str
    dataset: Dataset | None = None

    @classmethod
    def of(cls, path: Path, wanted_syntax: str) -> Outgoing:
        meta = read_file_meta_info(path)
        sop_class, syntax = str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
        if wanted_syntax and transfer_syntax_uid(wanted_syntax) != syntax:
            dataset = read_result(path, wanted_syntax)
            return cls(path, sop_class, str(dataset.file_meta.TransferSyntaxUID), dataset)
        return cls(path, sop_class, syntax)

    @property
    def context(self) -> tuple[str, str]:
        return self.sop_class, self.syntax

    def for_association(self, accepted: set[tuple[str, str]]) -> Dataset | Path:
        """What `send_c_store` takes: the file itself when the peer accepted its own context, else the
        dataset, uncompressed when the peer takes this SOP class uncompressed only (pynetdicom converts
        between the uncompressed syntaxes)."""
        if self.dataset is None and self.context in accepted:
            return self.path
        dataset = self.dataset if self.dataset is not None else dcmread(self.path)
        if (str(dataset.SOPClassUID), str(dataset.file_meta.TransferSyntaxUID)) not in accepted and (
            dataset.file_meta.TransferSyntaxUID.is_compressed
        ):
            uncompress(dataset)
        return dataset


def _no_delay(assoc) -> None:
    """Send each PDU at once (TCP_NODELAY). pynetdicom leaves Nagle's algorithm on, so a C-STORE request
    written in several pieces waits for the peer's delayed acknowledgement: about 40 ms per object on
    loopback, whatever its size."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _store(
    assoc, accepted: set[tuple[str, str]], item: Outgoing, name: str, delivery: Delivery, outcome: Outcome
) -> None:
    """C-STORE one object over the open association and report its delivery."""
    if not assoc.is_established:
        outcome.failed(delivery, f"{name} ended the association")
        return
    if not any(sop == item.sop_class for sop, _ in accepted):
        outcome.failed(delivery, f"{name} does not accept {UID(item.sop_class).name}")
        return
    try:
        status = assoc.send_c_store(item.for_association(accepted))
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


def _hex(code: int | None) -> str:
    return "none (no response)" if code is None else f"0x{code:04X}"
