"""The running node: receiver, scheduler, worker processes, sender, metrics; start and graceful stop.

Start-up recovers from whatever happened before: jobs left `processing` by a crash (or `kill -9`) are
queued again, and pending deliveries are simply due. While running, a worker process that dies has its
job re-queued and is restarted. Stop: the receiver stops accepting first, workers finish their current
job (SIGTERM; after `stop_timeout` they are killed and their jobs re-queued for the next start), the
sender makes a last pass, then the metrics endpoint closes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field

from dicom_node.config import NodeConfig

LOG = logging.getLogger("dicom_node.service")
TICK_SECONDS = 0.25


@dataclass
class Node:
    config: NodeConfig
    stop_timeout: float = 120.0
    workers: dict[str, multiprocessing.process.BaseProcess] = field(default_factory=dict)

    def start(self) -> None:
        metrics_dir = self.config.paths.database.parent / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        # before prometheus_client is imported here or in any worker: every process writes its own files
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        from cxrxai.index import ResultsIndex
        from dicom_node.audit import AuditLog
        from dicom_node.metrics import Metrics, serve_http
        from dicom_node.scp import start_server
        from dicom_node.sender import Sender
        from dicom_node.store import Store

        self.store = Store(self.config.paths.database)
        ResultsIndex(self.config.paths.index_location).engine.dispose()  # create / upgrade it once, here
        requeued = self.store.requeue_in_flight()
        if requeued:
            LOG.info("re-queued %d job(s) left in flight by the previous run", requeued)
        self.audit = AuditLog(self.config.paths.audit_log)
        self.metrics = Metrics()
        self.sender = Sender(self.config, self.store, self.audit, self.metrics)
        self._stopping = threading.Event()
        self._draining = False  # set by stop(): workers that exit now are not restarted
        self._context = multiprocessing.get_context("spawn")  # no forked torch / sqlite state
        # the listening sockets first: a port in use fails the start before any worker exists
        self.scp = start_server(self.config, self.store, self.audit, self.metrics)
        self.http = None
        if self.config.metrics.port is not None:
            self.http = serve_http(self.store, self.config.metrics.bind_address, self.config.metrics.port)
        for index in range(self.config.processing.workers):
            self._start_worker(f"worker-{index + 1}")
        self._threads = [
            threading.Thread(target=self._schedule, name="scheduler", daemon=True),
            threading.Thread(target=self._send, name="sender", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        LOG.info(
            "node %s listening on %s:%d with %d worker(s)",
            self.config.node.ae_title,
            self.config.node.bind_address,
            self.port,
            len(self.workers),
        )

    @property
    def port(self) -> int:
        return int(self.scp.server_address[1])

    @property
    def metrics_port(self) -> int | None:
        return int(self.http.server_address[1]) if self.http else None

    def _start_worker(self, name: str) -> None:
        from dicom_node.processing import worker_main

        process = self._context.Process(target=worker_main, args=(self.config, name), name=name, daemon=False)
        process.start()
        self.workers[name] = process

    def _schedule(self) -> None:
        while not self._stopping.is_set():
            try:
                self.store.promote_quiet_studies(self.config.node.study_quiet_seconds)
                for name, process in list(self.workers.items()):
                    if not process.is_alive() and not self._draining:
                        lost = self.store.requeue_in_flight(name)
                        LOG.error("worker %s died (exit %s); re-queued %d job(s), restarting it",
                                  name, process.exitcode, lost)  # fmt: skip
                        self._start_worker(name)
            except Exception:  # the scheduler must outlive a locked database or a failed restart
                LOG.exception("scheduler pass failed; retrying")
            self._stopping.wait(TICK_SECONDS)

    def _send(self) -> None:
        while not self._stopping.is_set():
            try:
                attempted = self.sender.run_once()
            except Exception:  # delivery errors are recorded per delivery; this is anything else
                LOG.exception("sender pass failed; retrying")
                attempted = 0
            if not attempted:
                self._stopping.wait(TICK_SECONDS)

    def stop(self) -> None:
        LOG.info("stopping: no new associations; workers finish their current job")
        self._draining = True
        self.scp.shutdown()
        for process in self.workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for name, process in self.workers.items():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                LOG.warning("worker %s did not finish in time; killing it, its job is re-queued", name)
                process.kill()
                process.join()
                self.store.requeue_in_flight(name)
        self._stopping.set()
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
