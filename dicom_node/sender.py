"""The outbox sender: due deliveries to their destinations, with retries.

Due deliveries are taken urgent first and grouped by destination; each group goes to the kind named by
its rows (`dicom_node.destinations`), which attempts each delivery once and reports it sent or failed.
The sender owns what every kind shares: a failed delivery waits `initial_delay * multiplier **
(attempts - 1)` seconds (at most `max_delay`) and is dead-lettered after `max_attempts` (`cxrxai node
resend` makes dead ones pending again); metrics, the audit log and the log record every outcome.
Destinations are looked up by name in the configuration at send time, so a changed address applies to
deliveries already queued.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import defaultdict
from functools import partial

from dicom_node.audit import AuditLog
from dicom_node.config import NodeConfig
from dicom_node.destinations import Destination, DestinationKind, Sending, kinds
from dicom_node.metrics import Metrics
from dicom_node.state import Delivery, DeliveryState, Store

LOG = logging.getLogger("dicom_node.sender")


class Sender:
    def __init__(self, config: NodeConfig, store: Store, audit: AuditLog, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        self.metrics = metrics
        self.destinations = {d.name: d for d in config.all_destinations}
        self.sending = Sending(config.node.ae_title, partial(client_tls_context, config))

    def run_once(self) -> int:
        """Attempt every due delivery once; return how many were attempted."""
        due = self.store.due_deliveries()
        groups: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
        for delivery in due:
            groups[delivery.destination, delivery.kind].append(delivery)
        for (name, kind), deliveries in groups.items():
            started = time.perf_counter()
            destination = self.destinations.get(name)
            if destination is None:
                self._fail_all(deliveries, f"destination {name!r} is no longer configured")
            elif destination.kind != kind:
                self._fail_all(deliveries, f"destination {name!r} is now of kind {destination.kind!r}, "
                                           f"not {kind!r} as when this was queued")  # fmt: skip
            else:  # a configured kind: the configuration was validated against the registry
                self._deliver(kinds()[kind], destination, deliveries)
            self.metrics.stage_seconds.labels(stage="delivery").observe(time.perf_counter() - started)
        return len(due)

    def _deliver(self, kind: DestinationKind, destination: Destination, deliveries: list[Delivery]) -> None:
        report = _Report(self)
        try:
            kind.deliver(destination, deliveries, self.sending, report)
        except Exception as exc:  # a kind's bug must not stall the outbox: its deliveries fail and retry
            LOG.exception("the %s kind failed delivering to %s", kind.name, destination.name)
            error = f"{type(exc).__name__}: {exc}"
        else:
            error = f"the {kind.name} kind reported no outcome"
        self._fail_all([d for d in deliveries if d.id not in report.reported], error)

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
        dead = state is DeliveryState.DEAD
        self.metrics.deliveries.labels(outcome="dead" if dead else "retry").inc()
        LOG.warning("delivery %d to %s failed (%s); %s", delivery.id, delivery.destination, error,
                    "dead-lettered" if dead else f"retry in {delay:.0f} s")  # fmt: skip

    def _fail_all(self, deliveries: list[Delivery], error: str) -> None:
        for delivery in deliveries:
            self._failed(delivery, error)


class _Report:
    """The `Outcome` one kind's pass reports to: records each delivery through the sender and remembers
    which were reported."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.reported: set[int] = set()

    def sent(self, delivery: Delivery) -> None:
        self.reported.add(delivery.id)
        self.sender._sent(delivery)

    def failed(self, delivery: Delivery, error: str) -> None:
        self.reported.add(delivery.id)
        self.sender._failed(delivery, error)


def client_tls_context(config: NodeConfig) -> ssl.SSLContext:
    """TLS towards a destination: verify its certificate against our CAs; present ours when we have one."""
    tls = config.node.tls
    cafile = str(tls.ca_certificates) if tls.ca_certificates else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.check_hostname = False  # PACS certificates rarely name the host the router uses
    if tls.certificate and tls.private_key:
        context.load_cert_chain(str(tls.certificate), str(tls.private_key))
    return context
