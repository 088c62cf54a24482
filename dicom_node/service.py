"""The running node: receiver, scheduler, job queue (local worker processes, or Celery), sender,
metrics; start and graceful stop.

Start-up recovers from whatever happened before: jobs left `processing` by a crash (or `kill -9`) are
queued again (those dispatched to Celery are collected instead), and pending deliveries are simply due.
While running, a local worker process that dies has its job re-queued and is restarted. Stop: the
receiver stops accepting first, local workers finish their current job (SIGTERM; after `stop_timeout`
they are killed and their jobs re-queued for the next start), the sender makes a last pass, then the
metrics endpoint closes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from dataclasses import dataclass

from dicom_node.config import NodeConfig

LOG = logging.getLogger("dicom_node.service")
TICK_SECONDS = 0.25  # the longest a scheduler or sender pass waits
MIN_PAUSE_SECONDS = 0.005


@dataclass
class Node:
    config: NodeConfig
    stop_timeout: float = 120.0

    def start(self) -> None:
        metrics_dir = self.config.paths.database.parent / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        # before prometheus_client is imported here or in any worker: every process writes its own files
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        from cxrxai.index import ResultsIndex
        from dicom_node.audit import AuditLog
        from dicom_node.metrics import Metrics, serve_http
        from dicom_node.queues import make_queue
        from dicom_node.scp import start_server
        from dicom_node.sender import Sender
        from dicom_node.state import Store
        from dicom_node.wakeups import Wakeups

        self.wakeups = Wakeups.create()
        self.store = Store(self.config.paths.database)
        ResultsIndex(self.config.paths.index_location).engine.dispose()  # create / upgrade it once, here
        requeued = self.store.requeue_in_flight()
        if requeued:
            LOG.info("re-queued %d job(s) left in flight by the previous run", requeued)
        self.audit = AuditLog(self.config.paths.audit_log)
        self.metrics = Metrics()
        self.sender = Sender(self.config, self.store, self.audit, self.metrics)
        self._stopping = threading.Event()
        self.queue = make_queue(self.config, self.store, self.wakeups)
        # the listening sockets first: a port in use fails the start before any worker exists
        self.scp = start_server(
            self.config, self.store, self.audit, self.metrics, on_received=self.wakeups.received.set
        )
        self.http = None
        if self.config.metrics.port is not None:
            self.http = serve_http(self.store, self.config.metrics.bind_address, self.config.metrics.port)
        self.queue.start()
        self._threads = [
            threading.Thread(target=self._schedule, name="scheduler", daemon=True),
            threading.Thread(target=self._send, name="sender", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        LOG.info(
            "node %s listening on %s:%d, %s queue",
            self.config.node.ae_title,
            self.config.node.bind_address,
            self.port,
            self.config.queue.backend,
        )

    @property
    def port(self) -> int:
        return int(self.scp.server_address[1])

    @property
    def metrics_port(self) -> int | None:
        return int(self.http.server_address[1]) if self.http else None

    def _schedule(self) -> None:
        """Queue studies as they fall quiet, and let the queue dispatch and collect. Sleeps until the
        earliest receiving study falls quiet, a new instance arrives, or a tick passes."""
        from dicom_node.wakeups import wait_for

        quiet = self.config.node.study_quiet_seconds
        while not self._stopping.is_set():
            pause = TICK_SECONDS
            try:
                if self.store.promote_quiet_studies(quiet):
                    self.wakeups.jobs.set()
                self.queue.tick()
                due = self.store.seconds_until_quiet(quiet)
                if due is not None:
                    pause = min(pause, max(due, MIN_PAUSE_SECONDS))
            except Exception:  # the scheduler must outlive a locked database, a broker outage, a restart
                LOG.exception("scheduler pass failed; retrying")
            wait_for(self.wakeups.received, pause)

    def _send(self) -> None:
        """Attempt due deliveries; when none were due, sleep until results are committed or a tick passes
        (deliveries waiting for a retry fall due on a tick)."""
        from dicom_node.wakeups import wait_for

        while not self._stopping.is_set():
            try:
                attempted = self.sender.run_once()
            except Exception:  # delivery errors are recorded per delivery; this is anything else
                LOG.exception("sender pass failed; retrying")
                attempted = 0
            if not attempted:
                wait_for(self.wakeups.deliveries, TICK_SECONDS)

    def stop(self) -> None:
        LOG.info("stopping: no new associations; workers finish their current job")
        self.scp.shutdown()
        self.queue.stop(self.stop_timeout)
        self._stopping.set()
        self.wakeups.wake_all()
        for thread in self._threads:
            thread.join()
        self.sender.run_once()  # a last pass for results finished during the stop
        if self.http is not None:
            self.http.shutdown()
        LOG.info("stopped")


def serve(config: NodeConfig) -> int:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    from dicom_node.logs import configure_logging

    configure_logging()
    node = Node(config)
    node.start()
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    done.wait()
    node.stop()
    return 0
