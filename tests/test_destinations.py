"""Destination kinds behind one interface (`dicom_node.destinations`): each kind delivers to a real peer on
loopback, the configuration validates kinds and their fields, an outbox made with the previous schema is
migrated, and kinds defined in this module (as a new module of the package would define them) are
validated, queued and delivered through without a change anywhere else."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless

from cxrxai.errors import CXRXAIError
from dicom_node.audit import AuditLog
from dicom_node.config import ConfigError, NodeConfig, QueueBackend, StorageKind, load_config
from dicom_node.destinations import (
    Carries,
    Destination,
    DestinationKind,
    Kind,
    Outcome,
    Sending,
    kinds,
    register,
)
from dicom_node.metrics import Metrics
from dicom_node.processing import InstanceOutcome, commit_outcome
from dicom_node.sender import Sender
from dicom_node.state import SCHEMA_VERSION, TRIAGE_WEBHOOK, Delivery, DeliveryState, Store
from tests.node_peers import (
    Webhook,
    free_port,
    node_toml,
    received_store_requests,
    storescp,
    write_radiograph,
)


@register
class Manifest(DestinationKind):
    """A kind from outside the package: it lists each result object's SOP Instance UID in a text file in
    its folder, and fails the objects whose file is gone."""

    name = "manifest"
    carries = Carries.OBJECTS

    def check(self, destination: Destination) -> list[str]:
        return [] if destination.folder else ["folder: required for a manifest"]

    def deliver(
        self, destination: Destination, deliveries: list[Delivery], sending: Sending, outcome: Outcome
    ) -> None:
        assert destination.folder is not None
        destination.folder.mkdir(parents=True, exist_ok=True)
        for delivery in deliveries:
            path = Path(delivery.path or "")
            if not path.is_file():
                outcome.failed(delivery, f"{path.name} is gone")
                continue
            with open(destination.folder / "manifest.txt", "a") as manifest:
                manifest.write(f"{delivery.sop_instance_uid}\n")
            outcome.sent(delivery)


@register
class Exploding(DestinationKind):
    """A kind with a bug: it raises instead of reporting."""

    name = "exploding"
    carries = Carries.OBJECTS

    def check(self, destination: Destination) -> list[str]:
        return []

    def deliver(
        self, destination: Destination, deliveries: list[Delivery], sending: Sending, outcome: Outcome
    ) -> None:
        raise RuntimeError("the kind has a bug")


def _config(root: Path, bundle: Path, destinations: list[dict], **sections) -> NodeConfig:
    return load_config(node_toml(root, bundle, free_port(), destinations, **sections), environ={})


def _commit(
    config: NodeConfig, store: Store, seed: int, notification: dict | None = None
) -> tuple[str, Path]:
    """Commit one explained instance as a worker does: one result object (a radiograph stands in for it)
    in the results folder, and the notification when given. Returns the object's UID and file."""
    relative = Path("results-of-test") / f"{seed}.dcm"
    path = write_radiograph(config.paths.results / relative, seed=seed)
    header = dcmread(path, stop_before_pixels=True)
    outcome = InstanceOutcome(
        f"1.2.826.0.1.3680043.10.1.{seed}", "done", objects=[(str(header.SOPInstanceUID), str(relative))],
        urgent=notification is not None, notification=notification,
    )  # fmt: skip
    commit_outcome(store, config, str(header.StudyInstanceUID), outcome)
    return str(header.SOPInstanceUID), path


def _sender(config: NodeConfig, store: Store) -> Sender:
    return Sender(config, store, AuditLog(config.paths.audit_log), Metrics())


def test_each_kind_delivers_to_a_real_peer(tiny_bundle, tmp_path):
    """A DICOM peer (DCMTK storescp; its kind inferred, as in node.toml files written before kinds), a
    folder that keeps pictures as JPEG 2000, and a webhook: the object goes to the first two, the triage
    notification to the webhook only."""
    pacs_port = free_port()
    webhook = Webhook()
    try:
        config = _config(
            tmp_path,
            tiny_bundle,
            [
                {"name": "pacs", "ae_title": "STORESCP", "host": "127.0.0.1", "port": pacs_port},
                {"name": "archive", "kind": "folder", "folder": "archive",
                 "transfer_syntax": "jpeg2000-lossless"},
                {"name": "alerts", "kind": "webhook", "url": webhook.url},
            ],
        )  # fmt: skip
        store = Store(config.paths.database)
        notification = {"event": "urgent-study", "study_instance_uid": "1.2.3"}
        uid, path = _commit(config, store, seed=1, notification=notification)
        queued = store.deliveries()
        assert {(d.destination, d.kind) for d in queued} == {
            ("pacs", Kind.DICOM), ("archive", Kind.FOLDER), ("alerts", Kind.WEBHOOK)
        } and all(d.urgent for d in queued)  # fmt: skip
        with storescp(tmp_path / "pacs", pacs_port):
            assert _sender(config, store).run_once() == 3
        assert store.deliveries() == []  # none pending, none dead
        sent = store.deliveries((DeliveryState.SENT,))
        assert [d.destination for d in sent] == ["pacs", "archive", "alerts"]
        assert received_store_requests(tmp_path / "pacs", pacs_port) == 1
        [stored] = [dcmread(p) for p in (tmp_path / "pacs").iterdir()]
        assert stored.SOPInstanceUID == uid and stored.PixelData == dcmread(path).PixelData
        copy = dcmread(tmp_path / "archive" / path.name)
        assert copy.SOPInstanceUID == uid and copy.file_meta.TransferSyntaxUID == JPEG2000Lossless
        assert webhook.received == [notification]
        audit = [json.loads(line) for line in config.paths.audit_log.read_text().splitlines()]
        assert sorted(e["destination"] for e in audit if e["event"] == "sent") == sorted(
            d.destination for d in sent
        )
    finally:
        webhook.server.shutdown()


def test_config_validates_kinds_and_their_fields(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(
        '[triage]\nwebhook_url = "ftp://alerts.example.org"\n'
        '[[destinations]]\nname = "a"\nkind = "stow"\n'
        '[[destinations]]\nname = "b"\nkind = "webhook"\n'
        '[[destinations]]\nname = "c"\nkind = "webhook"\nurl = "file:///etc/passwd"\n'
        '[[destinations]]\nname = "d"\nkind = "folder"\n'
        '[[destinations]]\nname = "e"\nurl = "https://alerts.example.org/cxrxai"\n'
        '[[destinations]]\nname = "f"\nae_title = "PACS"\nhost = "10.1.2.3"\nport = 70000\n'
    )
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    message = str(error.value)
    assert {"dicom", "folder", "webhook"} <= set(kinds())
    for line in (
        f"destinations.a.kind: 'stow' is not a destination kind (known: {', '.join(sorted(kinds()))})",
        "destinations.b.url: required for a webhook destination, e.g. https://alerts.example.org/cxrxai",
        "destinations.c.url: 'file:///etc/passwd' is not an http:// or https:// URL",
        "destinations.d.folder: required for a folder destination",
        "destinations.e.ae_title: must be 1-16 characters",  # no kind and no folder: a DICOM peer
        'destinations.e.url: a DICOM destination has no URL; for a webhook set kind = "webhook"',
        "destinations.f.port: 70000 is not a TCP port",
        "triage.webhook_url: 'ftp://alerts.example.org' is not an http:// or https:// URL",
    ):
        assert line in message, line
    assert len(message.splitlines()) == 10  # and e's missing host and port


def test_a_configuration_without_kinds_keeps_working(tmp_path):
    """Kinds are inferred as before they existed, and [triage] webhook_url is a webhook destination of
    its own; its name is taken."""
    path = tmp_path / "node.toml"
    old = (
        '[triage]\nwebhook_url = "https://alerts.example.org/cxrxai"\n'
        '[[destinations]]\nname = "pacs"\nae_title = "PACS"\nhost = "10.1.2.3"\nport = 104\n'
        '[[destinations]]\nname = "archive"\nfolder = "archive"\n'
    )
    path.write_text(old)
    config = load_config(path, environ={})
    assert [(d.name, d.kind) for d in config.destinations] == [("pacs", "dicom"), ("archive", "folder")]
    assert [(d.name, d.kind, d.url) for d in config.all_destinations[2:]] == [
        (TRIAGE_WEBHOOK, "webhook", "https://alerts.example.org/cxrxai")
    ]
    path.write_text(f'{old}[[destinations]]\nname = "{TRIAGE_WEBHOOK}"\nkind = "webhook"\nurl = "http://x"\n')
    with pytest.raises(ConfigError, match=r"used twice \(\[triage\] webhook_url takes it\)"):
        load_config(path, environ={})


def test_enumerated_settings_name_their_choices(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('[queue]\nbackend = "rabbitmq"\n[storage]\nkind = "nfs"\n')
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert "queue.backend: 'rabbitmq' is not embedded or celery" in str(error.value)
    assert "storage.kind: 'nfs' is not folder or s3" in str(error.value)
    path.write_text('[storage]\nkind = "folder"\n')
    config = load_config(path, environ={"CXRXAI_NODE_QUEUE_BACKEND": "embedded"})
    assert config.queue.backend is QueueBackend.EMBEDDED and config.storage.kind is StorageKind.FOLDER


# the outbox as the node made it before schema versions: no instances.attempts column, and webhook rows
# whose destination was the URL
PREVIOUS_SCHEMA = """
CREATE TABLE instances (
    sop_instance_uid TEXT PRIMARY KEY, study_instance_uid TEXT NOT NULL, series_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL, path TEXT NOT NULL, calling_ae_title TEXT NOT NULL,
    received_at REAL NOT NULL, state TEXT NOT NULL DEFAULT 'new', reason TEXT
);
CREATE TABLE studies (
    study_instance_uid TEXT PRIMARY KEY, state TEXT NOT NULL, first_received_at REAL NOT NULL,
    last_received_at REAL NOT NULL, urgent INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT, reason TEXT, updated_at REAL NOT NULL
);
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, study_instance_uid TEXT NOT NULL, sop_instance_uid TEXT NOT NULL,
    destination TEXT NOT NULL, kind TEXT NOT NULL, path TEXT, payload TEXT, urgent INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
    last_error TEXT, created_at REAL NOT NULL, sent_at REAL, UNIQUE (sop_instance_uid, destination)
);
CREATE TABLE dispatched (study_instance_uid TEXT PRIMARY KEY, task_id TEXT NOT NULL, sent_at REAL NOT NULL);
"""


def test_an_outbox_of_the_previous_schema_is_migrated(tiny_bundle, tmp_path):
    """Its webhook row names the triage webhook's destination and goes to the URL configured now; its
    instances count their attempts; a database of a newer schema is refused."""
    webhook = Webhook()
    try:
        config = _config(tmp_path, tiny_bundle, [], triage={"webhook_url": webhook.url})
        body = {"event": "urgent-study", "study_instance_uid": "1.2.3"}
        previous = sqlite3.connect(config.paths.database)
        previous.executescript(PREVIOUS_SCHEMA)
        previous.execute(
            "INSERT INTO instances VALUES ('1.2.3.4', '1.2.3', '1.2.3.5', '1.2.840.10008.5.1.4.1.1.1', "
            "'x.dcm', 'PACS', 0, 'new', NULL)"
        )
        previous.execute(
            "INSERT INTO deliveries (study_instance_uid, sop_instance_uid, destination, kind, payload, "
            "urgent, next_attempt_at, created_at) VALUES ('1.2.3', 'webhook:1.2.3.4', "
            "'http://old.example.org/notify', 'webhook', ?, 1, 0, 0)",
            (json.dumps(body),),
        )
        previous.commit()
        previous.close()
        store = Store(config.paths.database)
        [delivery] = store.deliveries()
        assert (delivery.destination, delivery.kind, delivery.state) == (TRIAGE_WEBHOOK, "webhook", "pending")
        assert store.retry_instance("1.2.3.4", "an error", max_attempts=2) == "new"  # attempts counted
        assert Store(config.paths.database).deliveries() == [delivery]  # opened again: nothing to do
        with sqlite3.connect(config.paths.database) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert _sender(config, store).run_once() == 1
        assert webhook.received == [body]
        assert [d.destination for d in store.deliveries((DeliveryState.SENT,))] == [TRIAGE_WEBHOOK]
    finally:
        webhook.server.shutdown()
    store.close()
    newer = sqlite3.connect(config.paths.database)
    newer.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer.close()
    with pytest.raises(CXRXAIError, match="made by a newer cxrxai"):
        Store(config.paths.database)


def test_a_kind_defined_outside_the_package_is_delivered_through(tiny_bundle, tmp_path):
    """The Manifest kind above: node.toml names it, its check validates it, the outbox queues its
    deliveries and the sender hands them to it; what it reports as failed is retried, then dead."""
    destination = {"name": "list", "kind": "manifest", "folder": "lists"}
    with pytest.raises(ConfigError, match="destinations.list.folder: required for a manifest"):
        _config(tmp_path, tiny_bundle, [{"name": "list", "kind": "manifest"}])
    config = _config(tmp_path, tiny_bundle, [destination], retry={"max_attempts": 1})
    store = Store(config.paths.database)
    kept, _ = _commit(config, store, seed=2)
    gone, path = _commit(config, store, seed=3)
    path.unlink()
    assert {(d.destination, d.kind) for d in store.deliveries()} == {("list", "manifest")}
    assert _sender(config, store).run_once() == 2
    assert (tmp_path / "lists" / "manifest.txt").read_text().split() == [kept]
    dead = store.deliveries((DeliveryState.DEAD,))
    assert [(d.sop_instance_uid, d.last_error) for d in dead] == [(gone, f"{path.name} is gone")]


def test_the_sender_fails_what_no_kind_delivered(tiny_bundle, tmp_path):
    """A kind that raises, a webhook that is down, a destination removed from node.toml and one whose kind
    changed since its delivery was queued: each delivery fails with the reason and waits for its retry."""
    down = f"http://127.0.0.1:{free_port()}/notify"
    config = _config(
        tmp_path,
        tiny_bundle,
        [{"name": "bug", "kind": "exploding"}, {"name": "archive", "folder": "archive"},
         {"name": "alerts", "kind": "webhook", "url": down}],
    )  # fmt: skip
    store = Store(config.paths.database)
    uid, path = _commit(config, store, seed=4, notification={"event": "urgent-study"})
    study = str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    stale = [("gone", "dicom"), ("archive", "dicom")]  # queued before node.toml changed
    store.commit_results(study, "1.2.9", [("1.2.9.1", path)], stale, urgent=False)
    assert _sender(config, store).run_once() == 5
    failed = {(d.destination, d.sop_instance_uid): d for d in store.deliveries()}
    assert {d.state for d in failed.values()} == {"pending"} and {d.attempts for d in failed.values()} == {1}
    assert failed["bug", uid].last_error == "RuntimeError: the kind has a bug"
    assert failed["alerts", "webhook:1.2.826.0.1.3680043.10.1.4"].last_error.startswith("alerts: ")
    assert failed["gone", "1.2.9.1"].last_error == "destination 'gone' is no longer configured"
    assert failed["archive", "1.2.9.1"].last_error == (
        "destination 'archive' is now of kind 'folder', not 'dicom' as when this was queued"
    )
    assert [d.destination for d in store.deliveries((DeliveryState.SENT,))] == ["archive"]
