"""The outbox sender: C-STORE result objects to the configured destinations, with retries.

Due deliveries are taken urgent first; those for one DICOM destination share one association (one
presentation context per SOP class and transfer syntax actually needed). A delivery that fails waits
`initial_delay * multiplier ** (attempts - 1)` seconds (at most `max_delay`) and is dead-lettered after
`max_attempts`; `cxrxai node resend` makes dead ones pending again. Any status other than success
(including warnings, which mean the PACS changed our object) is recorded with its code. Folder
destinations copy the file (fsync'ed); webhook deliveries POST the triage notification as JSON.
"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.request
from collections import defaultdict
from functools import partial
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from cxrxai.dicom.encoding import transcode, transfer_syntax_uid, uncompress
from dicom_node.audit import AuditLog
from dicom_node.config import Destination, NodeConfig
from dicom_node.metrics import Metrics
from dicom_node.spool import durable_write
from dicom_node.store import Delivery, Store

LOG = logging.getLogger("dicom_node.sender")


class Sender:
    def __init__(self, config: NodeConfig, store: Store, audit: AuditLog, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        self.metrics = metrics
        self.destinations = {d.name: d for d in config.destinations}

    def run_once(self) -> int:
        """Attempt every due delivery once; return how many were attempted."""
        due = self.store.due_deliveries()
        by_destination: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in due:
            by_destination[delivery.destination].append(delivery)
        for name, deliveries in by_destination.items():
            started = time.perf_counter()
            if deliveries[0].kind == "webhook":
                for delivery in deliveries:
                    self._attempt(delivery, partial(_post, name, delivery.payload or "{}"))
            elif name not in self.destinations:
                for delivery in deliveries:
                    self._failed(delivery, f"destination {name!r} is no longer configured")
            elif (folder := self.destinations[name].folder) is not None:
                syntax = self.destinations[name].transfer_syntax
                for delivery in deliveries:
                    self._attempt(delivery, partial(_copy, Path(delivery.path or ""), folder, syntax))
            else:
                self._send_dicom(self.destinations[name], deliveries)
            self.metrics.stage_seconds.labels(stage="delivery").observe(time.perf_counter() - started)
        return len(due)

    def _send_dicom(self, destination: Destination, deliveries: list[Delivery]) -> None:
        datasets = {}
        for delivery in deliveries:
            try:
                datasets[delivery.id] = _read(Path(delivery.path or ""), destination.transfer_syntax)
            except OSError as exc:
                self._failed(delivery, f"result file unreadable: {exc}")
            except Exception as exc:  # this object cannot be re-encoded: record it, send the others
                self._failed(delivery, f"not re-encoded for {destination.name}: {type(exc).__name__}: {exc}")
        if not datasets:
            return
        ae = AE(ae_title=self.config.node.ae_title)
        for sop_class, syntax in sorted({_context(ds) for ds in datasets.values()}):
            # ours first; uncompressed as the fall-back every storage SCP accepts (PS3.5 10.1)
            offered = list(dict.fromkeys([syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
            ae.add_requested_context(sop_class, offered)
        tls = (client_tls_context(self.config), destination.host) if destination.tls else None
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls)
        if not assoc.is_established:
            for delivery in deliveries:
                if delivery.id in datasets:
                    self._failed(delivery, f"association with {destination.name} not established")
            return
        accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
        try:
            for delivery in deliveries:
                if delivery.id not in datasets:
                    continue
                dataset = datasets[delivery.id]
                if not assoc.is_established:
                    self._failed(delivery, f"{destination.name} ended the association")
                    continue
                if not any(sop == dataset.SOPClassUID for sop, _ in accepted):
                    self._failed(delivery, f"{destination.name} does not accept {dataset.SOPClassUID.name}")
                    continue
                try:
                    if (
                        _context(dataset) not in accepted
                        and dataset.file_meta.TransferSyntaxUID.is_compressed
                    ):
                        uncompress(dataset)  # the peer takes this SOP class uncompressed only
                    status = assoc.send_c_store(dataset)
                except Exception as exc:  # this object cannot go over this association: record it on
                    self._failed(delivery, f"{type(exc).__name__}: {exc}")  # the delivery, go on
                    continue
                code = int(status.Status) if "Status" in status else None
                if code == 0x0000:
                    self._sent(delivery)
                else:
                    self._failed(delivery, f"{destination.name} answered status {_hex(code)}")
        finally:
            if assoc.is_established:
                assoc.release()

    def _attempt(self, delivery: Delivery, action) -> None:
        try:
            action()
        except (OSError, ValueError) as exc:
            self._failed(delivery, str(exc))
            return
        self._sent(delivery)

    def _sent(self, delivery: Delivery) -> None:
        self.store.delivery_sent(delivery.id)
        self.metrics.deliveries.labels(outcome="sent").inc()
        self.audit.write(
            "sent",
            study_instance_uid=delivery.study_instance_uid,
            sop_instance_uid=delivery.sop_instance_uid,
            destination=delivery.destination,
        )

    def _failed(self, delivery: Delivery, error: str) -> None:
        retry = self.config.retry
        delay = min(
            retry.max_delay_seconds, retry.initial_delay_seconds * retry.multiplier**delivery.attempts
        )
        state = self.store.delivery_failed(delivery.id, error, delay, retry.max_attempts)
        self.metrics.deliveries.labels(outcome="dead" if state == "dead" else "retry").inc()
        LOG.warning("delivery %d to %s failed (%s); %s", delivery.id, delivery.destination, error,
                    "dead-lettered" if state == "dead" else f"retry in {delay:.0f} s")  # fmt: skip


def _context(dataset: Dataset) -> tuple[str, str]:
    return str(dataset.SOPClassUID), str(dataset.file_meta.TransferSyntaxUID)


def _read(path: Path, syntax: str) -> Dataset:
    """A result object as the destination takes it: in its configured transfer syntax, if it has one."""
    dataset = dcmread(path)
    if syntax:
        transcode(dataset, transfer_syntax_uid(syntax))
    return dataset


def _copy(path: Path, folder: Path, syntax: str = "") -> None:
    if not syntax:
        durable_write(folder / path.name, path.read_bytes())
        return
    buffer = BytesIO()
    _read(path, syntax).save_as(buffer, enforce_file_format=True)
    durable_write(folder / path.name, buffer.getvalue())


def _post(url: str, payload: str) -> None:
    request = urllib.request.Request(
        url, data=payload.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"webhook answered HTTP {response.status}")


def client_tls_context(config: NodeConfig) -> ssl.SSLContext:
    """TLS towards a destination: verify its certificate against our CAs; present ours when we have one."""
    tls = config.node.tls
    cafile = str(tls.ca_certificates) if tls.ca_certificates else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.check_hostname = False  # PACS certificates rarely name the host the router uses
    if tls.certificate and tls.private_key:
        context.load_cert_chain(str(tls.certificate), str(tls.private_key))
    return context


def _hex(code: int | None) -> str:
    return "none (no response)" if code is None else f"0x{code:04X}"
