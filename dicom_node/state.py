"""The node's durable state in one SQLite file (WAL): received instances, study jobs and the outbox of
deliveries. (The results index is `cxrxai.index`, a database of its own: `[paths] index`.)

Why SQLite: every state change is one short transaction that survives `kill -9` and power loss
(`synchronous=FULL`), several processes (the receiver, the workers, the sender) share it safely, and
an operator can inspect it with the `sqlite3` shell. Job and delivery claims are single `UPDATE ...
RETURNING` statements, so two workers never take the same job.

States (`InstanceState`, `StudyState`, `DeliveryState`; SQLite holds their values):
- instance: new -> done | skipped | failed (the reason is kept; for done, the optional result objects
  that could not be made). An error met on one image leaves it new with its attempts counted, so the
  next run of its study tries it again; after `processing.max_attempts` it fails with that error.
- study: receiving -> queued (after the quiet period) -> processing -> done | skipped | failed, with
  the count of each instance state as its reason ("2 done, 1 skipped, 1 failed"); a study with new
  instances left (received meanwhile, or waiting for a retry) goes back to receiving instead.
- delivery: pending -> sent | dead (after the retry policy's attempts; `resend` makes it pending again).
  One row per (result SOP Instance UID, destination name): a job that is re-run after a crash re-creates
  the same objects with the same UIDs and cannot queue them twice. The row's kind says which destination
  kind (`dicom_node.destinations`) delivers it; the destination's address is read from the configuration
  when it is sent.

The schema is versioned with `PRAGMA user_version`: opening an older database applies the steps in
`MIGRATIONS` it has not had, in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cxrxai.errors import CXRXAIError

# the destination that `[triage] webhook_url` stands for (dicom_node.config), by its name in the outbox
TRIAGE_WEBHOOK = "triage-webhook"


class InstanceState(StrEnum):
    NEW = "new"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class StudyState(StrEnum):
    RECEIVING = "receiving"
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


FINISHED = (StudyState.DONE, StudyState.SKIPPED, StudyState.FAILED)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    calling_ae_title TEXT NOT NULL,
    received_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT '{InstanceState.NEW}',
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances (study_instance_uid, state);
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    first_received_at REAL NOT NULL,
    last_received_at REAL NOT NULL,
    urgent INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    reason TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_by_state ON studies (state, urgent, last_received_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_instance_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT,
    payload TEXT,
    urgent INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT '{DeliveryState.PENDING}',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    sent_at REAL,
    UNIQUE (sop_instance_uid, destination)
);
CREATE TABLE IF NOT EXISTS dispatched (
    study_instance_uid TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    sent_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, urgent DESC, next_attempt_at);
"""


def _count_instance_attempts(db: sqlite3.Connection) -> None:
    """Version 1: per-instance retries count their attempts (databases made before have no column)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(instances)")}
    if "attempts" not in columns:
        db.execute("ALTER TABLE instances ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")


def _name_webhook_destinations(db: sqlite3.Connection) -> None:
    """Version 2: every delivery names its destination; webhook rows held the triage webhook's URL, which
    now lives in the configuration. A notification queued for two URLs (changed between runs) keeps its
    newest row."""
    db.execute("UPDATE OR REPLACE deliveries SET destination = ? WHERE kind = 'webhook'", (TRIAGE_WEBHOOK,))


# step i upgrades a database from version i to i + 1
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _count_instance_attempts,
    _name_webhook_destinations,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Job:
    study_instance_uid: str
    attempts: int
    urgent: bool


@dataclass(frozen=True)
class Delivery:
    id: int
    study_instance_uid: str
    sop_instance_uid: str
    destination: str
    kind: str  # a name in dicom_node.destinations.kinds()
    path: str | None
    payload: str | None
    urgent: bool
    state: DeliveryState
    attempts: int
    last_error: str | None


class Store:
    """Thread-safe access (one connection per thread) to the node's SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connection().executescript(SCHEMA)  # executescript commits on its own
        if self._version() != SCHEMA_VERSION:
            self._upgrade()

    def _version(self) -> int:
        version = self._connection().execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CXRXAIError(
                f"{self.path}: made by a newer cxrxai (schema version {version}; this one knows up to "
                f"{SCHEMA_VERSION}): run that version, or give this node a database of its own"
            )
        return version

    def _upgrade(self) -> None:
        """Apply the migrations this database has not had; the version is read again under the writer
        lock, so processes opening it together upgrade it once."""
        with self.transaction() as db:
            for step in MIGRATIONS[self._version() :]:
                step(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA busy_timeout=30000")
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: the writer lock is taken up front, so no transaction fails late."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    # -- receiving ---------------------------------------------------------------------------------

    def record_instance(
        self,
        sop_instance_uid: str,
        study_instance_uid: str,
        series_instance_uid: str,
        sop_class_uid: str,
        path: Path,
        calling_ae_title: str,
    ) -> bool:
        """Record a spooled instance; return False if it was already known (a re-send changes nothing)."""
        now = time.time()
        with self.transaction() as db:
            known = db.execute(
                "SELECT 1 FROM instances WHERE sop_instance_uid = ?", (sop_instance_uid,)
            ).fetchone()
            if known is None:
                db.execute(
                    "INSERT INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid, "
                    "sop_class_uid, path, calling_ae_title, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, str(path),
                     calling_ae_title, now),
                )  # fmt: skip
            db.execute(
                "INSERT INTO studies (study_instance_uid, state, first_received_at, last_received_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (study_instance_uid) DO UPDATE "
                "SET last_received_at = excluded.last_received_at, updated_at = excluded.updated_at, "
                "state = CASE WHEN ? AND state IN (?, ?, ?) THEN ? ELSE state END",
                (study_instance_uid, StudyState.RECEIVING, now, now, now, known is None, *FINISHED,
                 StudyState.RECEIVING),
            )  # fmt: skip
        return known is None

    # -- jobs --------------------------------------------------------------------------------------

    def promote_quiet_studies(self, quiet_seconds: float, now: float | None = None) -> int:
        """Queue every study that received nothing for `quiet_seconds`; return how many."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE studies SET state = ?, updated_at = ? WHERE state = ? AND last_received_at <= ?",
                (StudyState.QUEUED, now, StudyState.RECEIVING, now - quiet_seconds),
            )
            return cursor.rowcount

    def seconds_until_quiet(self, quiet_seconds: float, now: float | None = None) -> float | None:
        """How long until the earliest receiving study has been quiet for `quiet_seconds` (0 when one
        already has); None when no study is receiving."""
        now = time.time() if now is None else now
        (earliest,) = (
            self._connection()
            .execute("SELECT MIN(last_received_at) FROM studies WHERE state = ?", (StudyState.RECEIVING,))
            .fetchone()
        )
        return None if earliest is None else max(0.0, earliest + quiet_seconds - now)

    def claim_job(self, worker: str) -> Job | None:
        """Take the next queued study (urgent first, then oldest) for `worker`, or None."""
        with self.transaction() as db:
            row = db.execute(
                "UPDATE studies SET state = ?, worker = ?, attempts = attempts + 1, "
                "updated_at = ? WHERE study_instance_uid = (SELECT study_instance_uid FROM studies "
                "WHERE state = ? ORDER BY urgent DESC, last_received_at LIMIT 1) "
                "RETURNING study_instance_uid, attempts, urgent",
                (StudyState.PROCESSING, worker, time.time(), StudyState.QUEUED),
            ).fetchone()
        return Job(row[0], row[1], bool(row[2])) if row else None

    def new_instances(self, study_instance_uid: str) -> list[sqlite3.Row]:
        return (
            self._connection()
            .execute(
                "SELECT * FROM instances WHERE study_instance_uid = ? AND state = ? ORDER BY received_at",
                (study_instance_uid, InstanceState.NEW),
            )
            .fetchall()
        )

    def finish_instance(self, sop_instance_uid: str, state: InstanceState, reason: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE instances SET state = ?, reason = ? WHERE sop_instance_uid = ?",
                (state, reason, sop_instance_uid),
            )

    def retry_instance(self, sop_instance_uid: str, error: str, max_attempts: int) -> InstanceState:
        """Count a failed attempt at one image: it stays new for the next run of its study, or fails
        with the error once it has had `max_attempts`. Returns its state."""
        with self.transaction() as db:
            attempts = db.execute(
                "UPDATE instances SET attempts = attempts + 1, reason = ? WHERE sop_instance_uid = ? "
                "RETURNING attempts",
                (error, sop_instance_uid),
            ).fetchone()[0]
            if attempts < max_attempts:
                return InstanceState.NEW
            db.execute(
                "UPDATE instances SET state = ?, reason = ? WHERE sop_instance_uid = ?",
                (InstanceState.FAILED, f"{error} (after {attempts} attempts)", sop_instance_uid),
            )
        return InstanceState.FAILED

    def finish_job(self, study_instance_uid: str) -> StudyState:
        """Close a job: the study's state from all its instances (`study_outcome`), with the count of
        each instance state as its reason. A study with new instances left (received meanwhile, or
        waiting for a retry) goes back to receiving and is queued once quiet (a retry at once); its
        attempts start again from zero either way. Returns the state."""
        with self.transaction() as db:
            counts = dict(
                db.execute(
                    "SELECT state, COUNT(*) FROM instances WHERE study_instance_uid = ? GROUP BY state",
                    (study_instance_uid,),
                ).fetchall()
            )
            final = StudyState.RECEIVING if counts.get(InstanceState.NEW) else study_outcome(counts)
            order = (InstanceState.DONE, InstanceState.SKIPPED, InstanceState.FAILED, InstanceState.NEW)
            summary = ", ".join(
                f"{counts[state]} {'waiting' if state is InstanceState.NEW else state}"
                for state in order
                if counts.get(state)
            )
            db.execute(
                "UPDATE studies SET state = ?, reason = ?, worker = NULL, attempts = 0, updated_at = ? "
                "WHERE study_instance_uid = ?",
                (final, summary, time.time(), study_instance_uid),
            )
        return final

    def retry_or_fail_job(self, job: Job, error: str, max_attempts: int) -> StudyState:
        """After a failed attempt: queue the job again, or mark it failed when attempts are used up."""
        state = StudyState.FAILED if job.attempts >= max_attempts else StudyState.QUEUED
        with self.transaction() as db:
            db.execute(
                "UPDATE studies SET state = ?, reason = ?, worker = NULL, updated_at = ? "
                "WHERE study_instance_uid = ?",
                (state, error, time.time(), job.study_instance_uid),
            )
            if state is StudyState.FAILED:
                db.execute(
                    "UPDATE instances SET state = ?, reason = ? WHERE study_instance_uid = ? AND state = ?",
                    (InstanceState.FAILED, error, job.study_instance_uid, InstanceState.NEW),
                )
        return state

    def requeue_in_flight(self, worker: str | None = None) -> int:
        """Jobs left in processing (by a crashed worker, or by everyone after a restart) are queued again;
        not those dispatched to a task queue, which are still in the broker."""
        with self.transaction() as db:
            if worker is None:
                cursor = db.execute(
                    "UPDATE studies SET state = ?, worker = NULL WHERE state = ? "
                    "AND study_instance_uid NOT IN (SELECT study_instance_uid FROM dispatched)",
                    (StudyState.QUEUED, StudyState.PROCESSING),
                )
            else:
                cursor = db.execute(
                    "UPDATE studies SET state = ?, worker = NULL WHERE state = ? AND worker = ?",
                    (StudyState.QUEUED, StudyState.PROCESSING, worker),
                )
            return cursor.rowcount

    def record_dispatch(self, study_instance_uid: str, task_id: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO dispatched VALUES (?, ?, ?)",
                (study_instance_uid, task_id, time.time()),
            )

    def dispatched(self) -> list[tuple[Job, str]]:
        """Jobs sent to a task queue and not yet collected, oldest first, with their task IDs."""
        rows = self._connection().execute(
            "SELECT s.study_instance_uid, s.attempts, s.urgent, d.task_id FROM dispatched d "
            "JOIN studies s USING (study_instance_uid) ORDER BY d.sent_at"
        )
        return [(Job(row[0], row[1], bool(row[2])), row[3]) for row in rows]

    def forget_dispatch(self, study_instance_uid: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM dispatched WHERE study_instance_uid = ?", (study_instance_uid,))

    def mark_urgent(self, study_instance_uid: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE studies SET urgent = 1 WHERE study_instance_uid = ?", (study_instance_uid,))

    # -- results and outbox ------------------------------------------------------------------------

    def commit_results(
        self,
        study_instance_uid: str,
        source_sop_instance_uid: str,
        objects: list[tuple[str, Path]],
        destinations: Sequence[tuple[str, str]],
        urgent: bool,
        *,
        notification: dict | None = None,
        notified: Sequence[tuple[str, str]] = (),
        note: str | None = None,
    ) -> None:
        """In one transaction: one delivery per (object, destination), the triage notification (urgent)
        to each of `notified`, and the source instance marked done, with `note` (the optional objects that
        could not be made) as its reason. `objects` are (SOP Instance UID, file) already on disk and in
        the results index; `destinations` and `notified` are (name, kind). Committing the same results
        again (a job re-run after a crash) queues nothing twice."""
        now = time.time()
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO deliveries (study_instance_uid, sop_instance_uid, destination, kind, "
                "path, urgent, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(study_instance_uid, uid, name, kind, str(path), int(urgent), now, now)
                 for uid, path in objects for name, kind in destinations],
            )  # fmt: skip
            if notification is not None:
                # keyed by its source instance ("webhook:" as in databases made before other kinds)
                db.executemany(
                    "INSERT OR IGNORE INTO deliveries (study_instance_uid, sop_instance_uid, destination, "
                    "kind, payload, urgent, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                    [(study_instance_uid, f"webhook:{source_sop_instance_uid}", name, kind,
                      json.dumps(notification), now, now) for name, kind in notified],
                )  # fmt: skip
            db.execute(
                "UPDATE instances SET state = ?, reason = ? WHERE sop_instance_uid = ?",
                (InstanceState.DONE, note, source_sop_instance_uid),
            )

    def due_deliveries(self, limit: int = 100, now: float | None = None) -> list[Delivery]:
        now = time.time() if now is None else now
        rows = (
            self._connection()
            .execute(
                "SELECT * FROM deliveries WHERE state = ? AND next_attempt_at <= ? "
                "ORDER BY urgent DESC, id LIMIT ?",
                (DeliveryState.PENDING, now, limit),
            )
            .fetchall()
        )
        return [_delivery(row) for row in rows]

    def delivery_sent(self, delivery_id: int) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE deliveries SET state = ?, sent_at = ?, last_error = NULL, "
                "attempts = attempts + 1 WHERE id = ?",
                (DeliveryState.SENT, time.time(), delivery_id),
            )

    def delivery_failed(self, delivery_id: int, error: str, delay: float, max_attempts: int) -> DeliveryState:
        """Record a failed attempt; the delivery waits `delay` seconds, or is dead after max_attempts."""
        with self.transaction() as db:
            row = db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                "WHERE id = ? RETURNING attempts",
                (error, time.time() + delay, delivery_id),
            ).fetchone()
            state = DeliveryState.DEAD if row[0] >= max_attempts else DeliveryState.PENDING
            db.execute("UPDATE deliveries SET state = ? WHERE id = ?", (state, delivery_id))
        return state

    def deliveries(
        self, states: tuple[str, ...] = (DeliveryState.PENDING, DeliveryState.DEAD)
    ) -> list[Delivery]:
        marks = ", ".join("?" * len(states))
        rows = (
            self._connection()
            .execute(f"SELECT * FROM deliveries WHERE state IN ({marks}) ORDER BY id", states)
            .fetchall()
        )
        return [_delivery(row) for row in rows]

    def resend(self, ids: list[int] | None = None) -> int:
        """Make dead deliveries (all, or those with these ids) pending again with a fresh attempt count."""
        with self.transaction() as db:
            if ids is None:
                cursor = db.execute(
                    "UPDATE deliveries SET state = ?, attempts = 0, next_attempt_at = ? WHERE state = ?",
                    (DeliveryState.PENDING, time.time(), DeliveryState.DEAD),
                )
            else:
                marks = ", ".join("?" * len(ids))
                cursor = db.execute(
                    f"UPDATE deliveries SET state = ?, attempts = 0, next_attempt_at = ? "
                    f"WHERE state IN (?, ?) AND id IN ({marks})",
                    (DeliveryState.PENDING, time.time(), DeliveryState.DEAD, DeliveryState.SENT, *ids),
                )
            return cursor.rowcount

    # -- observation -------------------------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        """State -> count for studies and deliveries (metrics, health, tests)."""
        db = self._connection()
        return {
            table: {
                row[0]: row[1] for row in db.execute(f"SELECT state, COUNT(*) FROM {table} GROUP BY state")
            }
            for table in ("studies", "deliveries", "instances")
        }

    def study(self, study_instance_uid: str) -> sqlite3.Row | None:
        return (
            self._connection()
            .execute("SELECT * FROM studies WHERE study_instance_uid = ?", (study_instance_uid,))
            .fetchone()
        )

    def instance_states(self, study_instance_uid: str) -> dict[str, tuple[str, str | None]]:
        rows = self._connection().execute(
            "SELECT sop_instance_uid, state, reason FROM instances WHERE study_instance_uid = ?",
            (study_instance_uid,),
        )
        return {row[0]: (row[1], row[2]) for row in rows}


def study_outcome(states: Iterable[str]) -> StudyState:
    """A study is done when any instance was explained, skipped when all were skipped, else failed."""
    states = list(states)
    if InstanceState.DONE in states:
        return StudyState.DONE
    skipped = states and all(state == InstanceState.SKIPPED for state in states)
    return StudyState.SKIPPED if skipped else StudyState.FAILED


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=row["id"],
        study_instance_uid=row["study_instance_uid"],
        sop_instance_uid=row["sop_instance_uid"],
        destination=row["destination"],
        kind=row["kind"],
        path=row["path"],
        payload=row["payload"],
        urgent=bool(row["urgent"]),
        state=DeliveryState(row["state"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
    )
