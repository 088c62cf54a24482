"""A worker: load the model once, then take study jobs from the store and explain them.

For each new instance of a claimed study: route it (skip non-chest / lateral with the reason), read
it, explain it, write the DICOM results (SR, SEG, SC, GSPS) under `results/<study>/<source SOP>/`
(fsync'ed), add it to the results index (`cxrxai.index`, keyed by the SR's UID), then in one
transaction queue one delivery per result object and destination and mark the instance done. A crash
anywhere before that commit leaves the instance new; the job is re-run and, because result UIDs are
derived from the source and the bundle (`cxrxai.dicom.common.result_uid`), produces the same objects,
which the index already holds and the outbox's unique key will not queue twice. One bad image fails
only itself; a job whose infrastructure fails (database, disk) is retried, then marked failed with the
error.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread

from cxrxai.errors import CXRXAIError
from dicom_node.config import NodeConfig
from dicom_node.destinations import Carries, carrying
from dicom_node.metrics import Metrics
from dicom_node.routing import route
from dicom_node.spool import durable_write
from dicom_node.state import InstanceState, Job, Store
from dicom_node.wakeups import Signal, wait_for

if TYPE_CHECKING:
    from cxrxai.index.database import Image

LOG = logging.getLogger("dicom_node.worker")


@dataclass
class InstanceOutcome:
    """What explaining one spooled instance produced: its state, and for `done` the result files
    (relative to the results folder, so a node and a remote worker may mount it at different places),
    whether triage made the study urgent, and the webhook notification."""

    sop_instance_uid: str
    state: str  # done | skipped | failed | retry (an error met on this image: try it again)
    reason: str | None = None  # for done: the optional objects that could not be made
    objects: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance UID, relative path)
    urgent: bool = False
    notification: dict | None = None


@dataclass
class _Computed:
    """One image's results, encoded in memory, not yet written."""

    objects: list[tuple[str, bytes, Path]]  # (SOP Instance UID, Part 10 bytes, target file)
    indexed: Image  # the results-index rows
    missing: list[str]
    urgent: bool
    notification: dict | None
    encoding_seconds: float


class Processor:
    """Explains spooled instances into result files and the results index. Touches neither the node's
    database nor the outbox, so it runs in the node's worker processes and in remote workers alike."""

    def __init__(self, config: NodeConfig, metrics: Metrics) -> None:
        from cxrxai.dicom.result_objects import HeatmapSelection
        from cxrxai.explain import Explainer
        from cxrxai.index import ResultsIndex
        from cxrxai.model.layout import DEFAULT_BUNDLE

        processing = config.processing
        self.config = config
        self.metrics = metrics
        self.explainer = Explainer.from_bundle(
            processing.bundle or DEFAULT_BUNDLE, processing.bundle_hash, processing.device
        )
        self.selection = HeatmapSelection(processing.heatmaps)
        self.index = ResultsIndex(config.paths.index_location)
        self._warm_up()
        # The model, the libraries and the warm-up's caches live as long as the process. Frozen out of the
        # garbage collector's view, its full collections stop walking them: they paused the building of an
        # image's DICOM objects (about 0.37 s) for another 0.25 s every few images (bench_sizes, issue 32).
        gc.collect()
        gc.freeze()

    def _warm_up(self) -> None:
        """Run the whole pipeline once on a synthetic radiograph, so the first real study does not pay
        for lazy imports, font caches and first-call allocations (several seconds on 2 cores)."""
        from cxrxai.io import read_radiograph
        from cxrxai.samples import chest_image, radiograph_dataset

        radiograph = read_radiograph(radiograph_dataset(chest_image(96, 80), uid_seed="warm-up"))
        explanation = self.explainer.explain(radiograph, methods=self.config.processing.methods)
        assert radiograph.dataset is not None
        self._build(explanation, radiograph)

    def _build(self, explanation, radiograph):
        from cxrxai.dicom.result_objects import build_dicom_results

        processing = self.config.processing
        return build_dicom_results(
            explanation,
            radiograph.dataset,
            radiograph.pixels,
            self.selection,
            transfer_syntax=processing.transfer_syntax,
            layer_maps=processing.layer_maps,
        )

    def explain_instance(
        self, study_instance_uid: str, sop: str, path: Path, urgent: bool
    ) -> InstanceOutcome:
        """Route, explain and encode one image, then write its results and index them.

        Anything that goes wrong with the image itself fails it alone: a refusal of ours
        (`CXRXAIError`) for good, any other error as `retry` (the node tries it again, then fails it
        with this reason). Writing the result files and the index is the node's infrastructure: those
        errors propagate and the job is retried."""
        try:
            computed = self._compute(study_instance_uid, sop, path, urgent)
        except CXRXAIError as exc:  # this image cannot be explained: fail it alone, keep the reason
            self.metrics.instances_processed.labels(outcome="failed").inc()
            return InstanceOutcome(sop, "failed", str(exc))
        except Exception as exc:  # a defect met on this image: the image fails alone, after its retries
            LOG.exception("instance %s of study %s could not be explained", sop, study_instance_uid)
            self.metrics.instances_processed.labels(outcome="error").inc()
            return InstanceOutcome(sop, "retry", f"{type(exc).__name__}: {_one_line(exc)}")
        if isinstance(computed, InstanceOutcome):
            return computed
        started = time.perf_counter()
        results = self.config.paths.results
        for _, encoded, target in computed.objects:
            durable_write(target, encoded)
        self.index.add(computed.indexed)
        self.metrics.stage_seconds.labels(stage="encoding").observe(
            computed.encoding_seconds + time.perf_counter() - started
        )
        for line in computed.missing:
            LOG.warning("instance %s of study %s: %s", sop, study_instance_uid, line)
        self.metrics.instances_processed.labels(outcome="done").inc()
        relative = [(uid, str(target.relative_to(results))) for uid, _, target in computed.objects]
        reason = "; ".join(computed.missing) or None
        return InstanceOutcome(sop, "done", reason, relative, computed.urgent, computed.notification)

    def _compute(
        self, study_instance_uid: str, sop: str, path: Path, urgent: bool
    ) -> InstanceOutcome | _Computed:
        """Everything that depends on the image alone, in memory: a skip outcome, or the encoded result
        objects, their index rows and the triage decision."""
        from cxrxai.dicom.result_objects import result_file_name
        from cxrxai.dicom.result_writer import encode_result
        from cxrxai.io import read_radiograph

        header = dcmread(path, stop_before_pixels=True)
        decision = route(header, self.config.routing)
        if not decision.process:
            self.metrics.instances_processed.labels(outcome="skipped").inc()
            return InstanceOutcome(sop, "skipped", decision.reason)
        started = time.perf_counter()
        radiograph = read_radiograph(path)
        explanation = self.explainer.explain(
            radiograph, methods=self.config.processing.methods, lung_mask=False, explain_only=self._shown
        )
        inference = time.perf_counter() - started
        self.metrics.stage_seconds.labels(stage="inference").observe(inference)
        started = time.perf_counter()
        assert radiograph.dataset is not None  # the spool holds DICOM only
        made = self._build(explanation, radiograph)
        folder = self.config.paths.results / study_instance_uid / sop
        objects = [
            (str(d.SOPInstanceUID), encode_result(d), folder / result_file_name(d)) for d in made.datasets
        ]
        sr = next(d for d in made.datasets if d.Modality == "SR")
        indexed = indexed_image(sr, {uid: target for uid, _, target in objects}, inference)
        triaged = self._triage(explanation)
        notification = None
        if (urgent or triaged) and carrying(self.config.all_destinations, Carries.NOTIFICATION):
            notification = self._notification(study_instance_uid, header, explanation)
        return _Computed(
            objects, indexed, made.missing, urgent or triaged, notification, time.perf_counter() - started
        )

    def _shown(self, predictions) -> list[str]:
        """The findings whose maps the result objects show: the only ones worth a backward pass."""
        return [f.name for f in self.selection.choose(predictions)]

    def _triage(self, explanation) -> bool:
        probabilities = {f.name: f.probability for f in explanation.findings}
        return any(
            probabilities.get(rule.finding, 0.0) >= rule.min_probability for rule in self.config.triage.rules
        )

    def _notification(self, study_instance_uid: str, header, explanation) -> dict:
        """What the triage webhook receives: UIDs and findings, no names, IDs or dates."""
        rules = {rule.finding: rule.min_probability for rule in self.config.triage.rules}
        return {
            "event": "urgent-study",
            "study_instance_uid": study_instance_uid,
            "sop_instance_uid": str(header.SOPInstanceUID),
            "findings": [
                {"name": f.name, "probability": round(f.probability, 4)}
                for f in explanation.findings
                if f.name in rules and f.probability >= rules[f.name]
            ],
            "model": {k: explanation.model[k] for k in ("name", "version", "content_hash")},
        }


def commit_outcome(
    store: Store, config: NodeConfig, study_instance_uid: str, outcome: InstanceOutcome
) -> None:
    """Record one instance's outcome in the node's database: for `done`, its deliveries (result objects to
    the destinations whose kind carries them, the notification to those that carry it) and the instance
    marked done in one transaction; re-committing the same outcome queues nothing twice. A `retry`
    outcome leaves the instance new for another attempt, until `processing.max_attempts`."""
    if outcome.state == "retry":
        store.retry_instance(
            outcome.sop_instance_uid, outcome.reason or "error", config.processing.max_attempts
        )
        return
    if outcome.state != "done":
        store.finish_instance(outcome.sop_instance_uid, InstanceState(outcome.state), outcome.reason)
        return
    if outcome.urgent:
        store.mark_urgent(study_instance_uid)
    destinations = [(d.name, d.kind) for d in carrying(config.all_destinations, Carries.OBJECTS)]
    notified = [(d.name, d.kind) for d in carrying(config.all_destinations, Carries.NOTIFICATION)]
    files = [(uid, config.paths.results / relative) for uid, relative in outcome.objects]
    store.commit_results(
        study_instance_uid, outcome.sop_instance_uid, files, destinations, outcome.urgent,
        notification=outcome.notification, notified=notified, note=outcome.reason,
    )  # fmt: skip


class Worker:
    """A worker process of the embedded queue: claims study jobs from the node's database, explains
    them with a Processor and commits each instance's outcome."""

    def __init__(
        self,
        config: NodeConfig,
        store: Store,
        metrics: Metrics,
        name: str,
        on_committed: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.name = name
        self.processor = Processor(config, metrics)
        self.on_committed = on_committed  # called after each image's outcome is committed

    def run_once(self) -> bool:
        """Process one job if there is one; return whether there was."""
        job = self.store.claim_job(self.name)
        if job is None:
            return False
        try:
            self.process(job)
        except Exception as exc:  # infrastructure failure: recorded on the job, retried, never lost
            LOG.exception("job for study %s failed", job.study_instance_uid)
            state = self.store.retry_or_fail_job(
                job, f"{type(exc).__name__}: {exc}", self.config.processing.max_attempts
            )
            if state == "failed":
                self.metrics.studies.labels(outcome="failed").inc()
            return True
        state = self.store.finish_job(job.study_instance_uid)
        if state != "receiving":  # not back for a retry or for instances received meanwhile
            self.metrics.studies.labels(outcome=state).inc()
        return True

    def process(self, job: Job) -> None:
        for row in self.store.new_instances(job.study_instance_uid):
            self.metrics.stage_seconds.labels(stage="queue_wait").observe(time.time() - row["received_at"])
            outcome = self.processor.explain_instance(
                job.study_instance_uid, row["sop_instance_uid"], Path(row["path"]), job.urgent
            )
            commit_outcome(self.store, self.config, job.study_instance_uid, outcome)
            if self.on_committed is not None:
                self.on_committed()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or "no message"


def indexed_image(sr, files: dict[str, Path], seconds: float | None = None):
    """The results-index rows of one processed image, read from its SR (the same reading as `cxrxai
    results ingest`, so every way in gives the same rows), with the files of its result objects (by SOP
    Instance UID) and the inference time when known."""
    from cxrxai.index.database import image_from_sr

    image = image_from_sr(sr, str(files[str(sr.SOPInstanceUID)]), processing_seconds=seconds)
    for obj in image.objects:
        obj.path = str(files[obj.sop_instance_uid]) if obj.sop_instance_uid in files else obj.path
    return image


def worker_main(
    config: NodeConfig,
    name: str,
    jobs: Signal,
    deliveries: Signal,
    poll_seconds: float = 0.2,
    log_level: str = "INFO",
) -> None:
    """Entry point of a worker process: load the model once, run jobs until SIGTERM. It logs at the
    node's level (a spawned process starts with none). Between jobs it waits for the scheduler's `jobs`
    wake-up (or `poll_seconds`), and it wakes the sender through `deliveries` after each committed image
    (`dicom_node.wakeups`).

    SIGTERM lets the current job finish (graceful shutdown); SIGKILL loses nothing either, since the
    service re-queues a dead worker's job.
    """
    from dicom_node.logs import configure_logging

    configure_logging(log_level)
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service decides; Ctrl-C reaches the whole group
    if config.processing.device == "cpu":  # share the cores between workers instead of oversubscribing
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.processing.workers))
    store = Store(config.paths.database)
    worker = Worker(config, store, Metrics(), name, on_committed=deliveries.set)
    LOG.info("worker %s ready (pid %d)", name, os.getpid())
    while not stopping:
        if not worker.run_once():
            wait_for(jobs, poll_seconds)
