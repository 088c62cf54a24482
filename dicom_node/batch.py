"""`cxrxai batch`: explain a folder of radiographs (a research archive) with the node's workers.

Each study becomes one job: with `[queue] backend = "celery"` a task for the remote `cxrxai worker`s (the
same task the node sends), otherwise explained here with one local Processor. Results go to the results
folder and the results index like the node's, without deliveries. The inputs are copied into
`<spool>/batch/<study>/<SOP>.dcm` first, because remote workers read the shared spool.

Resumable: a state file (SQLite, `--state`) records every study's task and outcome. Running the same
command again skips finished studies, collects tasks sent by an interrupted run (they went on in the
workers) and sends what is left; a folder that grew is picked up the same way.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from dicom_node.config import NodeConfig
from dicom_node.spool import durable_write

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    task_id TEXT,
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | done | skipped | failed
    detail TEXT
);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    path TEXT NOT NULL,  -- relative to the spool
    state TEXT,
    reason TEXT
);
"""


@dataclass
class BatchReport:
    studies: int = 0
    already_done: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    not_dicom: int = 0


class BatchState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.executescript(SCHEMA)

    def add(self, study: str, sop: str, relative: str) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO studies (study_instance_uid) VALUES (?)", (study,))
            new = self.db.execute(
                "INSERT OR IGNORE INTO instances (sop_instance_uid, study_instance_uid, path) "
                "VALUES (?, ?, ?)",
                (sop, study, relative),
            ).rowcount
            if new:  # a study that grew is explained again for its new instance
                self.db.execute(
                    "UPDATE studies SET state = 'pending', task_id = NULL WHERE study_instance_uid = ? "
                    "AND state IN ('done', 'skipped', 'failed')",
                    (study,),
                )

    def studies(self, *states: str) -> list[tuple[str, str | None]]:
        marks = ",".join("?" * len(states))
        return self.db.execute(
            f"SELECT study_instance_uid, task_id FROM studies WHERE state IN ({marks}) ORDER BY rowid", states
        ).fetchall()

    def instances(self, study: str) -> list[tuple[str, str]]:
        return self.db.execute(
            "SELECT sop_instance_uid, path FROM instances WHERE study_instance_uid = ? AND state IS NULL",
            (study,),
        ).fetchall()

    def sent(self, study: str, task_id: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE studies SET state = 'sent', task_id = ? WHERE study_instance_uid = ?",
                (task_id, study),
            )

    def finished(self, study: str, outcomes: list[dict], detail: str | None = None) -> str:
        from dicom_node.state import study_outcome

        state = study_outcome([o["state"] for o in outcomes]) if outcomes else "failed"
        with self.db:
            for outcome in outcomes:
                # a batch has no later run of the study to retry an image in: an error fails it
                final = "failed" if outcome["state"] == "retry" else outcome["state"]
                self.db.execute(
                    "UPDATE instances SET state = ?, reason = ? WHERE sop_instance_uid = ?",
                    (final, outcome["reason"], outcome["sop_instance_uid"]),
                )
            self.db.execute(
                "UPDATE studies SET state = ?, detail = ? WHERE study_instance_uid = ?",
                (state, detail, study),
            )
        return state


def run_batch(
    config: NodeConfig, inputs: Iterable[Path], state_path: Path, progress: bool = True
) -> BatchReport:
    state = BatchState(state_path)
    report = BatchReport()
    report.not_dicom = _stage(config, inputs, state)
    report.already_done = len(state.studies("done", "skipped"))
    todo = state.studies("pending", "sent")
    report.studies = report.already_done + len(todo)
    bar = _progress(len(todo), progress)
    counts = {"done": 0, "skipped": 0, "failed": 0}

    def finish(study: str, outcomes: list[dict], detail: str | None = None) -> None:
        counts[state.finished(study, outcomes, detail)] += 1
        bar.update(1)

    if config.queue.backend == "celery":
        _via_celery(config, state, todo, finish)
    else:
        _locally(config, state, todo, finish)
    bar.close()
    report.done, report.skipped, report.failed = counts["done"], counts["skipped"], counts["failed"]
    return report


def _stage(config: NodeConfig, inputs: Iterable[Path], state: BatchState) -> int:
    """Copy every DICOM file into the spool's batch folder (once) and record it; returns non-DICOM count."""
    skipped = 0
    for root in inputs:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            try:
                header = dcmread(file, stop_before_pixels=True)
                study, sop = str(header.StudyInstanceUID), str(header.SOPInstanceUID)
            except (InvalidDicomError, OSError, AttributeError):
                skipped += 1
                continue
            relative = Path("batch") / study / f"{sop}.dcm"
            target = config.paths.spool / relative
            if not target.is_file():
                durable_write(target, file.read_bytes())
            state.add(study, sop, str(relative))
    return skipped


def _via_celery(config: NodeConfig, state: BatchState, todo, finish) -> None:
    from dicom_node.object_store import object_store
    from dicom_node.queues import TASK, make_app

    app = make_app(config)
    objects = object_store(config)  # with S3, the workers read the staged images from the bucket
    waiting: dict[str, str] = {}
    for study, task_id in todo:
        if task_id is None:
            instances = [{"sop": sop, "path": path} for sop, path in state.instances(study)]
            if objects is not None:
                for item in instances:
                    objects.put("spool", item["path"], config.paths.spool / item["path"])
            payload = {"study": study, "urgent": False, "instances": instances}
            task_id = app.send_task(TASK, args=[payload], queue=config.queue.task_queue).id
            state.sent(study, task_id)
        waiting[study] = task_id
    while waiting:
        for study, task_id in list(waiting.items()):
            result = app.AsyncResult(task_id)
            if result.state == "SUCCESS":
                finish(study, result.result["instances"])
            elif result.state == "FAILURE":
                finish(study, [], f"remote worker: {result.result}")
            else:
                continue
            result.forget()
            del waiting[study]
        time.sleep(0.2)


def _locally(config: NodeConfig, state: BatchState, todo, finish) -> None:
    from dicom_node.metrics import Metrics
    from dicom_node.processing import Processor

    processor = Processor(config, Metrics())
    for study, _ in todo:
        outcomes = [
            asdict(processor.explain_instance(study, sop, config.paths.spool / path, False))
            for sop, path in state.instances(study)
        ]
        finish(study, outcomes)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="study", desc="explaining", disable=not enabled)
