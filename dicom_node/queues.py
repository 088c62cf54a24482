"""Job queue backends: where the node's study jobs are explained.

- `EmbeddedQueue` (default): worker processes on the node's machine claim jobs from the node's SQLite
  database (`Store.claim_job`); a dead worker's job is re-queued and the worker restarted.
- `CeleryQueue`: the node sends each job as a Celery task to a Redis broker; `cxrxai worker` processes on
  any machine that mounts the spool and results folders explain it (`Processor`) and return the outcome;
  the node commits the outcome (outbox rows, instance states) in its own database. The node alone writes
  its SQLite file; workers share only files, the results index and the broker.

The guarantees do not change: tasks are acknowledged late (after the work), one at a time per worker,
and redelivered when a worker dies (the broker's visibility timeout, longer than the slowest job).
A task run twice writes the same files (deterministic UIDs), the index keeps one row per SR, and the
outbox's unique key queues each delivery once, so every result still reaches each destination once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from dicom_node.config import NodeConfig
from dicom_node.state import Store
from dicom_node.wakeups import Wakeups

LOG = logging.getLogger("dicom_node.queue")
TASK = "cxrxai.explain_study"
CELERY_WORKER = "celery"  # the `worker` of a dispatched job in the node's database
COLLECT_SECONDS = 1.0
WORKER_POLL_SECONDS = 0.2  # the longest an idle local worker waits without a wake-up


class JobQueue(Protocol):
    def start(self) -> None: ...

    def tick(self) -> None:
        """One scheduler pass: start, dispatch or collect what is due."""

    def stop(self, timeout: float) -> None: ...


class EmbeddedQueue:
    """Local worker processes (spawned: no forked torch or SQLite state) claiming jobs from the store."""

    def __init__(self, config: NodeConfig, store: Store, wakeups: Wakeups) -> None:
        self.config, self.store, self.wakeups = config, store, wakeups
        self.workers: dict[str, multiprocessing.process.BaseProcess] = {}
        self._context = multiprocessing.get_context("spawn")
        self._draining = False

    def start(self) -> None:
        for index in range(self.config.processing.workers):
            self._start_worker(f"worker-{index + 1}")

    def _start_worker(self, name: str) -> None:
        from dicom_node.processing import worker_main

        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())  # the node's, e.g. the demo's
        process = self._context.Process(
            target=worker_main,
            args=(self.config, name, self.wakeups.jobs, self.wakeups.deliveries),
            kwargs={"poll_seconds": WORKER_POLL_SECONDS, "log_level": level},
            name=name,
            daemon=False,
        )
        process.start()
        self.workers[name] = process

    def tick(self) -> None:
        for name, process in list(self.workers.items()):
            if not process.is_alive() and not self._draining:
                lost = self.store.requeue_in_flight(name)
                LOG.error("worker %s died (exit %s); re-queued %d job(s), restarting it",
                          name, process.exitcode, lost)  # fmt: skip
                self._start_worker(name)

    def stop(self, timeout: float) -> None:
        """SIGTERM: each worker finishes its job; one that does not in time is killed, its job re-queued."""
        self._draining = True
        for process in self.workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        self.wakeups.jobs.set()  # an idle worker sees its SIGTERM when its wait ends
        deadline = time.monotonic() + timeout
        for name, process in self.workers.items():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                LOG.warning("worker %s did not finish in time; killing it, its job is re-queued", name)
                process.kill()
                process.join()
                self.store.requeue_in_flight(name)


class CeleryQueue:
    """The node's side of the Celery backend: dispatch queued jobs as tasks, collect finished ones."""

    def __init__(self, config: NodeConfig, store: Store, wakeups: Wakeups) -> None:
        from dicom_node.object_store import object_store

        self.config, self.store, self.wakeups = config, store, wakeups
        self.app = make_app(config)
        self.objects = object_store(config)  # None: the workers share the spool and results folders
        self._index: Any = None  # the results index, opened on first use (S3 mode points it at our copies)
        self._collected_at = 0.0

    def start(self) -> None:
        LOG.info("jobs go to Celery queue %r on %s", self.config.queue.task_queue, _safe(self.config))

    def tick(self) -> None:
        """Dispatch every tick; ask the result backend about dispatched jobs once a second (one Redis read
        per dispatched job, so a large backlog must not be polled four times a second)."""
        self.dispatch()
        if time.monotonic() - self._collected_at >= COLLECT_SECONDS:
            self.collect()
            self._collected_at = time.monotonic()

    def dispatch(self) -> int:
        sent = 0
        spool = self.config.paths.spool
        while (job := self.store.claim_job(CELERY_WORKER)) is not None:
            instances = []
            for row in self.store.new_instances(job.study_instance_uid):
                relative = str(Path(row["path"]).relative_to(spool))
                if self.objects is not None:
                    self.objects.put("spool", relative, Path(row["path"]))
                instances.append({"sop": row["sop_instance_uid"], "path": relative})
            payload = {"study": job.study_instance_uid, "urgent": job.urgent, "instances": instances}
            result = self.app.send_task(TASK, args=[payload], queue=self.config.queue.task_queue)
            self.store.record_dispatch(job.study_instance_uid, result.id)
            sent += 1
        return sent

    def collect(self) -> int:
        """Commit the outcome of every finished task; a failed task's job is retried or failed."""
        from dicom_node.processing import InstanceOutcome, commit_outcome

        finished = 0
        for job, task_id in self.store.dispatched():
            result = self.app.AsyncResult(task_id)
            if result.state == "SUCCESS":
                outcomes = [InstanceOutcome(**item) for item in result.result["instances"]]
                if self.objects is not None:
                    self._fetch_results(outcomes)
                for outcome in outcomes:
                    commit_outcome(self.store, self.config, job.study_instance_uid, outcome)
                self.store.finish_job(job.study_instance_uid)
            elif result.state == "FAILURE":
                LOG.error("task for study %s failed: %s", job.study_instance_uid, result.result)
                self.store.retry_or_fail_job(
                    job, f"remote worker: {result.result}", self.config.processing.max_attempts
                )
            else:
                continue
            self.store.forget_dispatch(job.study_instance_uid)
            result.forget()
            finished += 1
        if finished:
            self.wakeups.deliveries.set()
        return finished

    def _fetch_results(self, outcomes) -> None:
        """Copy the result files from the object store into the node's results folder (the sender sends
        files) and point the results index at these copies."""
        from pydicom import dcmread

        from cxrxai.index import ResultsIndex
        from dicom_node.processing import indexed_image

        assert self.objects is not None
        results = self.config.paths.results
        if self._index is None:
            self._index = ResultsIndex(self.config.paths.index_location)
        index = self._index
        for outcome in outcomes:
            files = {uid: results / relative for uid, relative in outcome.objects}
            for relative in (r for _, r in outcome.objects):
                self.objects.get("results", relative, results / relative)
            sr = next((path for path in files.values() if path.name.startswith("SR-")), None)
            if sr is not None:  # already indexed by the worker: this points its objects at our copies
                index.add(indexed_image(dcmread(sr), files))

    def stop(self, timeout: float) -> None:
        """Dispatched tasks go on in the remote workers; the next start collects them."""
        self.collect()


def make_queue(config: NodeConfig, store: Store, wakeups: Wakeups) -> JobQueue:
    kind = CeleryQueue if config.queue.backend == "celery" else EmbeddedQueue
    return kind(config, store, wakeups)


# -- the Celery application, shared by the node (sending) and `cxrxai worker` (executing) --------------

_PROCESSOR: Any = None  # the worker process's Processor: the model is loaded once, before consuming
_OBJECTS: Any = None  # the worker's ObjectStore with [storage] kind = "s3"


def make_app(config: NodeConfig):
    from celery import Celery

    url = config.queue.broker_url
    app = Celery("cxrxai", broker=url, backend=url, set_as_current=False)
    timeout = config.queue.visibility_timeout_seconds
    # kombu sweeps for unacknowledged messages of dead workers every interval x throttle seconds
    # (100 s by default): every 10 s at most, so a job comes back soon after its visibility timeout
    transport = {
        "visibility_timeout": timeout,
        "unacked_restore_interval": max(1.0, min(10.0, timeout / 2)),
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        task_acks_late=True,  # acknowledged after the work: a worker that dies loses nothing
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # one job at a time per worker
        task_track_started=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=config.queue.task_queue,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.task(name=TASK)(explain_study)
    return app


def explain_study(payload: dict) -> dict:
    """The task: explain every instance of one study from the shared spool; outcomes for the node."""
    processor = _PROCESSOR
    if processor is None:
        raise RuntimeError("no model loaded in this process: start workers with `cxrxai worker`")
    config = processor.config
    objects = _OBJECTS
    spool, results = config.paths.spool, config.paths.results
    outcomes = []
    for item in payload["instances"]:
        if objects is not None and not (spool / item["path"]).is_file():
            objects.get("spool", item["path"], spool / item["path"])
        outcome = processor.explain_instance(
            payload["study"], item["sop"], spool / item["path"], payload["urgent"]
        )
        if objects is not None:
            for _, relative in outcome.objects:
                objects.put("results", relative, results / relative)
        outcomes.append(outcome)
    return {"study": payload["study"], "instances": [asdict(o) for o in outcomes]}


def run_worker(config: NodeConfig, name: str | None = None, threads: int | None = None) -> int:
    """`cxrxai worker`: load the model once, then take one study task at a time until SIGTERM (which lets
    the current task finish; a task cut short by SIGKILL is redelivered after the visibility timeout).
    On the CPU the model uses `threads` threads, by default all cores: a worker alone on its machine.
    Workers sharing a machine must share its cores (two workers of two threads each on two cores ran at
    0.6x one worker's throughput, `bench/bench_batch.py`)."""
    global _PROCESSOR, _OBJECTS

    from dicom_node.logs import configure_logging
    from dicom_node.metrics import Metrics
    from dicom_node.object_store import object_store
    from dicom_node.processing import Processor

    configure_logging()
    if config.queue.backend != "celery":
        from cxrxai.errors import CXRXAIError

        raise CXRXAIError('cxrxai worker needs [queue] backend = "celery" and a broker_url in node.toml')
    import torch

    if config.processing.device == "cpu":
        torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    _PROCESSOR = Processor(config, Metrics())
    _OBJECTS = object_store(config)
    app = make_app(config)
    hostname = f"{name or 'cxrxai'}-{os.getpid()}@%h"
    device = config.processing.device
    compute = f"{torch.get_num_threads()} CPU threads" if device == "cpu" else device
    LOG.info(
        "worker %s starting on queue %r at %s, %s", hostname, config.queue.task_queue, _safe(config), compute
    )
    options = [
        "--pool=solo",
        "--concurrency=1",
        f"--queues={config.queue.task_queue}",
        f"--hostname={hostname}",
    ]
    app.worker_main(["worker", *options, "--loglevel=INFO", "--without-gossip", "--without-mingle"])
    return 0


def _safe(config: NodeConfig) -> str:
    """The broker URL without its password, for logs."""
    url = config.queue.broker_url
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
