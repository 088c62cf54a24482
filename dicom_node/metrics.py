"""Prometheus metrics and the health endpoint.

Workers are separate processes, so counters and histograms use prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set by the service before any worker starts): each process writes its own
files and the endpoint sums them. Queue depth and outbox backlog are read from the store at scrape time,
so they are right whichever process changed them.

GET /metrics: Prometheus text format. GET /health: JSON with the queue and outbox counts; 200 when the
database answers, 503 otherwise.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from dicom_node.state import Store

STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The node's metric objects (one set per process; multiprocess mode merges them).

    They are registered nowhere by default: in multiprocess mode the endpoint reads every process's
    files, so a registry entry would only count this process twice (and forbid a second Node in a test).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.instances_received = Counter(
            "cxrxai_instances_received", "Instances received and spooled", registry=registry
        )
        self.instances_refused = Counter(
            "cxrxai_instances_refused",
            "C-STORE requests answered with a failure",
            ["reason"],
            registry=registry,
        )
        self.associations_rejected = Counter(
            "cxrxai_associations_rejected", "Associations refused", ["reason"], registry=registry
        )
        self.studies = Counter(
            "cxrxai_studies", "Studies finished, by outcome", ["outcome"], registry=registry
        )
        self.instances_processed = Counter(
            "cxrxai_instances_processed", "Instances finished, by outcome", ["outcome"], registry=registry
        )
        self.deliveries = Counter(
            "cxrxai_deliveries", "Delivery attempts, by outcome", ["outcome"], registry=registry
        )
        self.stage_seconds = Histogram(
            "cxrxai_stage_seconds",
            "Seconds per stage: queue_wait (received to claimed), inference, encoding, delivery",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )


class StoreCollector:
    """Queue depth and outbox backlog, read from the store at each scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self):
        counts = self.store.counts()
        studies = GaugeMetricFamily("cxrxai_studies_by_state", "Studies in each state", labels=["state"])
        for state, count in counts["studies"].items():
            studies.add_metric([state], count)
        outbox = GaugeMetricFamily("cxrxai_deliveries_by_state", "Deliveries in each state", labels=["state"])
        for state, count in counts["deliveries"].items():
            outbox.add_metric([state], count)
        depth = counts["studies"].get("queued", 0) + counts["studies"].get("receiving", 0)
        yield GaugeMetricFamily("cxrxai_queue_depth", "Studies waiting to be processed", value=depth)
        yield GaugeMetricFamily(
            "cxrxai_outbox_backlog", "Deliveries not yet sent", value=counts["deliveries"].get("pending", 0)
        )
        yield studies
        yield outbox


def serve_http(store: Store, bind: str, port: int) -> ThreadingHTTPServer:
    """Start /metrics and /health in a daemon thread; return the server (server_address has the port)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(StoreCollector(store))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/metrics":
                self._answer(200, generate_latest(registry), "text/plain; version=0.0.4")
            elif self.path == "/health":
                try:
                    body, status = {"status": "ok", **store.counts()}, 200
                except Exception as exc:  # the health answer is the report of exactly this failure
                    body, status = {"status": "error", "error": str(exc)}, 503
                self._answer(status, json.dumps(body).encode(), "application/json")
            else:
                self._answer(404, b"not found: use /metrics or /health\n", "text/plain")

        def _answer(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # scrapes every few seconds would flood the log
            return

    server = ThreadingHTTPServer((bind, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
