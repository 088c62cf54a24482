"""The receiving Application Entity: Verification and Storage SCP for chest radiographs.

The C-STORE handler does the minimum, as pynetdicom's own storescp does: write the encoded dataset to
the spool (fsync'ed), record it in the store, answer. Explaining happens in the workers. Statuses:
- 0x0000 success, only after the file and its record are durable;
- 0xA700 out of resources when the spool cannot be written (disk full, read-only, permissions);
- 0xC210 cannot understand when the dataset cannot be decoded or lacks a UID our results reference
  (Study, Series, SOP Instance, SOP Class);
- 0x0110 processing failure when the node's database cannot record it.
Associations are refused, with the standard A-ASSOCIATE-RJ reasons, from calling AE titles not
allowed (rejected-permanent, service-user, calling-AE-title-not-recognised), from addresses outside
the allowed networks (rejected-permanent, service-user, no-reason-given), and while the spool disk is
fuller than the configured limit (rejected-transient, service-provider, local-limit-exceeded), so a
PACS retries later instead of losing the study.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable
from typing import cast

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import A_ASSOCIATE

from cxrxai.dicom.common import missing_reference_uids
from cxrxai.io.sop_classes import READABLE
from dicom_node.audit import AuditLog
from dicom_node.config import NodeConfig
from dicom_node.metrics import Metrics
from dicom_node.spool import disk_use_percent, durable_write, instance_path
from dicom_node.state import Store

LOG = logging.getLogger("dicom_node.scp")
VERIFICATION = "1.2.840.10008.1.1"
STORAGE_CLASSES = tuple(READABLE)  # CR, DX (both), Secondary Capture
TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND, PROCESSING_FAILURE = 0x0000, 0xA700, 0xC210, 0x0110
# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4
REJECT_AE_TITLE = (0x01, 0x01, 0x03)
REJECT_ADDRESS = (0x01, 0x01, 0x01)
REJECT_DISK_FULL = (0x02, 0x03, 0x02)

MAXIMUM_PDU_BYTES = 1024 * 1024


def build_ae(config: NodeConfig) -> AE:
    node = config.node
    ae = AE(ae_title=node.ae_title)
    ae.maximum_associations = node.max_associations
    # peers may send up to 1 MiB per P-DATA PDU instead of pynetdicom's 16 KiB: a 2 MB radiograph then
    # arrives in two PDUs rather than 120, each decoded in Python
    ae.maximum_pdu_size = MAXIMUM_PDU_BYTES
    ae.require_calling_aet = list(node.allowed_calling_ae_titles)
    ae.add_supported_context(VERIFICATION)
    for sop_class in STORAGE_CLASSES:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    return ae


def server_tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    tls = config.node.tls
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.certificate), str(tls.private_key))
    if tls.ca_certificates is not None:
        context.load_verify_locations(str(tls.ca_certificates))
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_NONE
    return context


def handlers(
    config: NodeConfig,
    store: Store,
    audit: AuditLog,
    metrics: Metrics,
    on_received: Callable[[], None] | None = None,
) -> list:
    networks = [ipaddress.ip_network(n, strict=False) for n in config.node.allowed_networks]
    spool = config.paths.spool

    def on_requested(event: evt.Event) -> None:
        address = event.assoc.requestor.address
        calling = cast(A_ASSOCIATE, event.assoc.requestor.primitive).calling_ae_title
        reason = _refusal(address, networks, spool, config.node.max_disk_use_percent)
        if reason is None:
            return
        reject, why = reason
        audit.write("association-rejected", calling_ae_title=calling, address=address, reason=why)
        metrics.associations_rejected.labels(reason=why).inc()
        event.assoc.acse.send_reject(*reject)
        event.assoc.kill()  # as pynetdicom does for its own refusals: waits until the A-ASSOCIATE-RJ is out

    def on_rejected(event: evt.Event) -> None:  # pynetdicom's own refusals (calling AE title)
        primitive = event.assoc.acceptor.primitive
        if primitive is not None and (primitive.result, primitive.result_source, primitive.diagnostic) == (
            REJECT_AE_TITLE
        ):
            calling = event.assoc.requestor.ae_title
            address = event.assoc.requestor.address
            audit.write("association-rejected", calling_ae_title=calling, address=address, reason="ae-title")
            metrics.associations_rejected.labels(reason="ae-title").inc()

    def on_established(event: evt.Event) -> None:
        requestor = event.assoc.requestor
        audit.write("association", calling_ae_title=requestor.ae_title, address=requestor.address)

    def on_store(event: evt.Event) -> int:
        calling = event.assoc.requestor.ae_title
        try:
            dataset = event.dataset
            missing = missing_reference_uids(dataset)
            study, series = str(dataset.get("StudyInstanceUID")), str(dataset.get("SeriesInstanceUID"))
            request = cast(C_STORE, event.request)
            sop = str(request.AffectedSOPInstanceUID)
            path = instance_path(spool, study, sop)
        except Exception as exc:  # any decoding problem of a peer's dataset is that peer's error
            LOG.warning("C-STORE from %s refused: cannot decode dataset (%s)", calling, type(exc).__name__)
            metrics.instances_refused.labels(reason="cannot-understand").inc()
            return CANNOT_UNDERSTAND
        if missing:  # our results could not reference the image: refused now, not failed later
            LOG.warning("C-STORE from %s refused: the dataset has no %s", calling, ", ".join(missing))
            metrics.instances_refused.labels(reason="cannot-understand").inc()
            return CANNOT_UNDERSTAND
        try:
            durable_write(path, event.encoded_dataset())
        except OSError as exc:
            LOG.error("spool write failed (%s): answering out of resources", exc.strerror or exc)
            metrics.instances_refused.labels(reason="out-of-resources").inc()
            return OUT_OF_RESOURCES
        try:
            store.record_instance(sop, study, series, str(request.AffectedSOPClassUID), path, calling)
        except Exception:
            LOG.exception("could not record a received instance")
            metrics.instances_refused.labels(reason="database").inc()
            return PROCESSING_FAILURE
        metrics.instances_received.inc()
        if on_received is not None:
            on_received()
        return SUCCESS

    return [
        (evt.EVT_REQUESTED, on_requested),
        (evt.EVT_REJECTED, on_rejected),
        (evt.EVT_ESTABLISHED, on_established),
        (evt.EVT_C_STORE, on_store),
    ]


def _refusal(
    address: str, networks: list, spool, max_disk_use: float
) -> tuple[tuple[int, int, int], str] | None:
    if networks:
        try:
            source = ipaddress.ip_address(address)
        except ValueError:
            return REJECT_ADDRESS, "address"
        if not any(source in network for network in networks):
            return REJECT_ADDRESS, "address"
    if disk_use_percent(spool) > max_disk_use:
        return REJECT_DISK_FULL, "disk-full"
    return None


def start_server(
    config: NodeConfig,
    store: Store,
    audit: AuditLog,
    metrics: Metrics,
    on_received: Callable[[], None] | None = None,
):
    """Start the SCP in background threads; return the pynetdicom server (shutdown() to stop).
    `on_received` is called after each instance is recorded (the scheduler's wake-up)."""
    ae = build_ae(config)
    server = ae.start_server(
        (config.node.bind_address, config.node.port),
        block=False,
        evt_handlers=handlers(config, store, audit, metrics, on_received),
        ssl_context=server_tls_context(config),
    )
    # each association's socket inherits TCP_NODELAY from the listening one (Linux): every C-STORE
    # response goes out at once instead of waiting on the peer's delayed acknowledgement (40 ms)
    assert server is not None and server.socket is not None  # block=False returns the running server
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server
