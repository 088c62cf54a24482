"""The DICOM node with real peers on loopback: DCMTK (echoscu, storescu, storescp) and Orthanc.

One node runs for the module (its worker process loads the model once, as in production); each test
sends its own studies. Crash recovery runs the node as a separate process group and kills it with
SIGKILL mid-job.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from dicom_node.config import ConfigError, load_config
from dicom_node.routing import route
from dicom_node.state import Store
from tests.dicom_validation import new_errors
from tests.node_peers import (
    Webhook,
    dcmtk,
    free_port,
    node_toml,
    orthanc,
    received_store_requests,
    rest,
    storescp,
    wait_for,
    write_radiograph,
)

RESULT_MODALITIES = {"SR", "SEG", "OT", "PR"}  # SR, SEG (anatomy and heat maps), SC pages, GSPS


@pytest.fixture(scope="module")
def running(tiny_bundle, tmp_path_factory):
    """A node sending to storescp and to a folder, with a triage rule that every study meets."""
    from dicom_node.service import Node

    root = tmp_path_factory.mktemp("node")
    pacs_port = free_port()
    webhook = Webhook()
    config_path = node_toml(
        root,
        tiny_bundle,
        free_port(),
        [
            {"name": "pacs", "ae_title": "STORESCP", "host": "127.0.0.1", "port": pacs_port},
            # an archive that keeps SEG and pictures as JPEG 2000: the node re-encodes them for it
            {"name": "archive", "folder": "archive", "transfer_syntax": "jpeg2000-lossless"},
        ],
        metrics={"port": 0},
        triage={"rules": [{"finding": "Cardiomegaly", "min_probability": 0.0}], "webhook_url": webhook.url},
    )
    config = load_config(config_path)
    with storescp(root / "pacs", pacs_port):
        node = Node(config)
        node.start()
        try:
            yield {"node": node, "root": root, "config": config, "pacs": root / "pacs", "webhook": webhook}
        finally:
            node.stop()
    webhook.server.shutdown()


def _send(node, *paths: Path, calling: str = "STORESCU") -> subprocess.CompletedProcess:
    return dcmtk("storescu", "-aet", calling, "-aec", "CXRXAI", "127.0.0.1", str(node.port), *map(str, paths))


def _study_finished(store: Store, study: str):
    row = store.study(study)
    return row if row is not None and row["state"] in ("done", "skipped", "failed") else None


def test_echo_store_explain_and_deliver(running, tmp_path):
    node = running["node"]
    assert dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", "CXRXAI", "127.0.0.1", str(node.port)).returncode == 0
    source = write_radiograph(tmp_path / "cr.dcm", seed=1)
    study = str(dcmread(source).StudyInstanceUID)
    sent = _send(node, source)
    assert sent.returncode == 0, sent.stderr
    assert wait_for(lambda: _study_finished(node.store, study), what="the study")["state"] == "done"
    pending = lambda: [d for d in node.store.deliveries(("pending",)) if d.study_instance_uid == study]  # noqa: E731
    wait_for(lambda: not pending(), what="deliveries")
    delivered = [dcmread(p) for p in running["pacs"].iterdir()]
    ours = [d for d in delivered if d.StudyInstanceUID == study]
    assert {d.Modality for d in ours} == RESULT_MODALITIES  # the results join the source study
    sr = next(d for d in ours if d.Modality == "SR")
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    # every object arrived valid with its UIDs: in the default Explicit VR Little Endian at the PACS, SEG
    # and pictures re-encoded as JPEG 2000 lossless in the archive configured for it
    for path in running["pacs"].iterdir():
        if dcmread(path, stop_before_pixels=True).StudyInstanceUID == study:
            assert new_errors(path, source) == [], path.name
    archived = {p: dcmread(p) for p in (running["root"] / "archive").iterdir()}
    assert {d.SOPInstanceUID for d in ours} <= {d.SOPInstanceUID for d in archived.values()}
    for path, copy in archived.items():
        if copy.StudyInstanceUID == study and copy.Modality in ("SEG", "OT"):
            assert copy.file_meta.TransferSyntaxUID == JPEG2000Lossless
            assert new_errors(path, source) == [], path.name
        elif copy.StudyInstanceUID == study:
            assert copy.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    # the results index has the image and its 14 findings
    from cxrxai.index import ResultsIndex

    index = ResultsIndex(node.config.paths.index_location)
    rows = index.query(study_instance_uid=study)
    assert len(rows) == 14 and rows.model_hash.str.startswith("sha256:").all()
    assert (rows.processing_seconds > 0).all() and set(rows.view_position) == {"PA"}
    indexed = index.objects(set(rows.sr_sop_instance_uid))
    assert {o.sop_instance_uid for o in indexed} <= {d.SOPInstanceUID for d in ours}
    assert {o.kind for o in indexed} == {"SR", "SEG", "SC"} and all(Path(o.path).is_file() for o in indexed)
    # ingesting the node's results folder finds nothing new: both ways in give the same rows
    again = ResultsIndex(node.config.paths.index_location).ingest([node.config.paths.results])
    assert again.added == 0 and again.unchanged >= 1 and again.attached == 0
    index.engine.dispose()
    # triage: urgent, webhook with UIDs and findings and no PHI
    assert node.store.study(study)["urgent"] == 1
    notes = wait_for(lambda: [n for n in running["webhook"].received if n["study_instance_uid"] == study])
    assert notes[0]["findings"][0]["name"] == "Cardiomegaly"
    assert "PHANTOM" not in json.dumps(notes) and "CXRXAI-0001" not in json.dumps(notes)
    # the audit log names peers and studies, never patients
    audit = (running["root"] / "audit.log").read_text()
    assert '"calling_ae_title": "STORESCU"' in audit and study in audit and "PHANTOM" not in audit


def test_stranger_is_rejected_and_node_keeps_serving(running):
    node = running["node"]
    refused = dcmtk("echoscu", "-aet", "STRANGER", "-aec", "CXRXAI", "127.0.0.1", str(node.port))
    assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stderr
    events = [json.loads(line) for line in (running["root"] / "audit.log").read_text().splitlines()]
    assert any(e["event"] == "association-rejected" and e["calling_ae_title"] == "STRANGER" for e in events)
    assert dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", "CXRXAI", "127.0.0.1", str(node.port)).returncode == 0


def test_lateral_non_chest_and_unreadable_images(running, tmp_path):
    """Skips carry their reason; an image that cannot be explained fails alone; the node keeps going."""
    node = running["node"]
    study = generate_uid()
    lateral = write_radiograph(tmp_path / "lat.dcm", seed=2, StudyInstanceUID=study, ViewPosition="LL")
    knee = write_radiograph(tmp_path / "knee.dcm", seed=3, StudyInstanceUID=study, BodyPartExamined="KNEE")
    assert _send(node, lateral, knee).returncode == 0
    assert wait_for(lambda: _study_finished(node.store, study))["state"] == "skipped"
    reasons = {state: reason for state, reason in node.store.instance_states(study).values()}
    assert set(reasons) == {"skipped"}
    states = node.store.instance_states(study)
    assert "view position LL" in states[str(dcmread(lateral).SOPInstanceUID)][1]
    assert "body part KNEE" in states[str(dcmread(knee).SOPInstanceUID)][1]
    # a CR whose pixels are colour: accepted (it is a valid CR), then refused by the reader, on its own
    broken = generate_uid()
    colour = write_radiograph(tmp_path / "colour.dcm", seed=4, StudyInstanceUID=broken)
    dataset = dcmread(colour)
    dataset.PhotometricInterpretation = "RGB"
    dataset.save_as(colour)
    good = write_radiograph(tmp_path / "good.dcm", seed=5, StudyInstanceUID=broken)
    assert _send(node, colour, good).returncode == 0
    assert wait_for(lambda: _study_finished(node.store, broken))["state"] == "done"
    states = node.store.instance_states(broken)
    assert states[str(dcmread(colour).SOPInstanceUID)][0] == "failed"
    assert states[str(dcmread(good).SOPInstanceUID)][0] == "done"


def test_statuses_for_bad_input(running, tmp_path, monkeypatch):
    """Undecodable dataset: 0xC210; unwritable spool: 0xA700 (out of resources); unsupported SOP class:
    no presentation context. The node answers an echo afterwards every time."""
    from pynetdicom import AE
    from pynetdicom import _config as pynetdicom_config

    node = running["node"]
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1")
    source = dcmread(write_radiograph(tmp_path / "a.dcm", seed=6))
    del source.StudyInstanceUID
    assoc = ae.associate("127.0.0.1", node.port, ae_title="CXRXAI")
    assert assoc.is_established
    assert assoc.send_c_store(source).Status == 0xC210
    # a dataset without the SOP Instance UID our results must reference, sent as the file it is (the
    # request's Affected SOP Instance UID comes from the file meta): refused now, not failed later
    anonymous = dcmread(write_radiograph(tmp_path / "c.dcm", seed=9))
    del anonymous.SOPInstanceUID
    anonymous.save_as(tmp_path / "c.dcm", enforce_file_format=True)
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)  # the file as it is
    assert assoc.send_c_store(tmp_path / "c.dcm").Status == 0xC210
    blocked = dcmread(write_radiograph(tmp_path / "b.dcm", seed=7))
    (running["config"].paths.spool / str(blocked.StudyInstanceUID)).write_text("a file where a folder goes")
    assert assoc.send_c_store(blocked).Status == 0xA700
    assoc.release()
    ct = write_radiograph(tmp_path / "ct.dcm", seed=8, SOPClassUID="1.2.840.10008.5.1.4.1.1.2", Modality="CT")
    refused = _send(node, ct)
    assert refused.returncode != 0 and "presentation context" in refused.stderr.lower()
    assert dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", "CXRXAI", "127.0.0.1", str(node.port)).returncode == 0


def test_health_and_metrics(running):
    port = running["node"].metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and "studies" in health
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        text = response.read().decode()
    for name in ("cxrxai_instances_received_total", "cxrxai_queue_depth", "cxrxai_outbox_backlog",
                 "cxrxai_stage_seconds_bucket"):  # fmt: skip
        assert name in text


def test_a_study_moves_on_by_wake_ups_without_polling(tiny_bundle, tmp_path, monkeypatch):
    """With every poll an hour long, a study is still queued when it falls quiet, explained and its results
    sent: each hand-over (receiver -> scheduler -> worker -> sender) wakes the next part."""
    from dicom_node import queues, service
    from dicom_node.service import Node

    monkeypatch.setattr(service, "TICK_SECONDS", 3600.0)
    monkeypatch.setattr(queues, "WORKER_POLL_SECONDS", 3600.0)
    pacs_port = free_port()
    config = load_config(
        node_toml(tmp_path, tiny_bundle, free_port(), [
            {"name": "pacs", "ae_title": "STORESCP", "host": "127.0.0.1", "port": pacs_port}
        ])
    )  # fmt: skip
    sources = [write_radiograph(tmp_path / f"cr{seed}.dcm", seed=seed) for seed in (4, 5)]
    with storescp(tmp_path / "pacs", pacs_port):
        node = Node(config)
        node.start()
        try:
            # the first study may be queued before the worker has loaded its model; the second finds
            # every part idle, waiting for its wake-up
            for source in sources:
                study = str(dcmread(source).StudyInstanceUID)
                assert _send(node, source).returncode == 0
                finished = wait_for(lambda: _study_finished(node.store, study), what="the study")  # noqa: B023
                assert finished["state"] == "done"
                wait_for(lambda: not node.store.deliveries(("pending",)), what="deliveries")
        finally:
            node.stop()
    assert {dcmread(p).Modality for p in (tmp_path / "pacs").iterdir()} == RESULT_MODALITIES
    assert len(list((tmp_path / "pacs").iterdir())) == len(list((tmp_path / "results").rglob("*.dcm")))


def test_admission_control_refuses_when_spool_disk_is_too_full(tiny_bundle, tmp_path):
    from dicom_node.service import Node

    config = load_config(
        node_toml(tmp_path, tiny_bundle, free_port(), [], node={"max_disk_use_percent": 0.001})
    )
    node = Node(config)
    node.start()
    try:
        refused = dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", "CXRXAI", "127.0.0.1", str(node.port))
        assert refused.returncode != 0 and "Local Limit Exceeded" in refused.stderr
    finally:
        node.stop()


def test_disk_use_is_what_df_reports(tmp_path):
    """Admins compare the limit with `df`; root-reserved blocks must not make the node read fuller."""
    from dicom_node.spool import disk_use_percent

    shown = subprocess.run(["df", "--output=pcent", str(tmp_path)], capture_output=True, text=True)
    percent = float(shown.stdout.split()[-1].rstrip("%"))
    assert percent - 1 <= disk_use_percent(tmp_path) <= percent  # df rounds up


def test_kill_9_mid_job_and_destination_down(tiny_bundle, tmp_path):
    """SIGKILL while a job runs, with the PACS down; restart; bring the PACS up: every result arrives
    exactly once."""
    pacs_port = free_port()
    config_path = node_toml(
        tmp_path,
        tiny_bundle,
        free_port(),
        [{"name": "pacs", "ae_title": "STORESCP", "host": "127.0.0.1", "port": pacs_port}],  # fmt: skip
    )
    config = load_config(config_path)
    sources = [write_radiograph(tmp_path / "in" / f"{i}.dcm", seed=10 + i) for i in range(2)]
    studies = {str(dcmread(p).StudyInstanceUID) for p in sources}

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "dicom_node", "--config", str(config_path)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "node.log", "ab"),
        )

    def state(query: str):
        with sqlite3.connect(config.paths.database, timeout=30) as db:
            return db.execute(query).fetchall()

    first = start()
    try:
        wait_for(lambda: dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", "CXRXAI", "127.0.0.1",
                               str(config.node.port)).returncode == 0, 60)  # fmt: skip
        assert dcmtk("storescu", "-aet", "STORESCU", "-aec", "CXRXAI", "127.0.0.1", str(config.node.port),
                     *map(str, sources)).returncode == 0  # fmt: skip
        wait_for(lambda: state("SELECT 1 FROM studies WHERE state = 'processing'"), 60, 0.02, "a job running")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the node and its workers, as a power cut would
        first.wait()
    second = start()
    try:
        done = "SELECT COUNT(*) FROM studies WHERE state = 'done'"
        wait_for(lambda: state(done)[0][0] == len(studies), 120, what="both studies processed")
        wait_for(lambda: state("SELECT 1 FROM deliveries WHERE attempts > 0"), 30, what="a failed attempt")
        with storescp(tmp_path / "pacs", pacs_port):
            wait_for(lambda: not state("SELECT 1 FROM deliveries WHERE state != 'sent'"), 60, what="delivery")
            received = [dcmread(p) for p in (tmp_path / "pacs").iterdir()]
            expected = state("SELECT COUNT(*) FROM deliveries")[0][0]
            assert len({d.SOPInstanceUID for d in received}) == expected
            assert received_store_requests(tmp_path / "pacs", pacs_port) == expected  # never twice
            assert {d.StudyInstanceUID for d in received} == studies
    finally:
        second.send_signal(signal.SIGTERM)  # graceful stop
        assert second.wait(60) == 0
    log = (tmp_path / "node.log").read_text()
    assert '"level": "info"' in log  # the default level logs: without names, IDs or dates
    assert "PHANTOM" not in log and "CXRXAI-0001" not in log and str(dcmread(sources[0]).StudyDate) not in log


def test_orthanc_sends_to_node_and_gets_results_back(tiny_bundle, tmp_path):
    node_port = free_port()
    with orthanc(tmp_path / "orthanc", {"cxrxai": ("CXRXAI", "127.0.0.1", node_port)}) as pacs:
        from dicom_node.service import Node

        config = load_config(
            node_toml(
                tmp_path / "node",
                tiny_bundle,
                node_port,
                [{"name": "orthanc", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": pacs["dicom_port"]}],
            )  # fmt: skip
        )
        node = Node(config)
        node.start()
        try:
            source = write_radiograph(tmp_path / "cr.dcm", seed=20)
            uploaded = rest(f"{pacs['http']}/instances", source.read_bytes())
            rest(f"{pacs['http']}/modalities/cxrxai/store", json.dumps([uploaded["ID"]]).encode(), "POST")
            study = uploaded["ParentStudy"]

            def modalities() -> set[str]:
                series = rest(f"{pacs['http']}/studies/{study}/series")
                return {s["MainDicomTags"].get("Modality") for s in series}

            wait_for(lambda: modalities() >= RESULT_MODALITIES, 120, 0.5, "our results in Orthanc")
            wait_for(lambda: not node.store.deliveries(("pending",)), 60, what="every delivery sent")
            instances = rest(f"{pacs['http']}/studies/{study}/instances")
            assert len(instances) == 1 + node.store.counts()["deliveries"]["sent"]
        finally:
            node.stop()


def test_config_errors_are_listed_together(tmp_path, monkeypatch):
    path = tmp_path / "node.toml"
    path.write_text(
        '[node]\nport = 70000\nallowed_networks = ["10.0.0.0/33"]\ncolour = "blue"\n'
        '[processing]\nworkers = 0\n[triage]\nrules = [{finding = "Headache", min_probability = 2}]\n'
    )
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    message = str(error.value)
    assert "node.colour: unknown key" in message
    path.write_text(
        '[node]\nport = 70000\nallowed_networks = ["10.0.0.0/33"]\n[processing]\nworkers = 0\n'
        'transfer_syntax = "jpeg"\n'
        '[[destinations]]\nname = "archive"\nfolder = "a"\ntransfer_syntax = "rle"\n'
    )
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    lines = str(error.value).splitlines()
    assert any("node.port: 70000" in line for line in lines)
    assert any("10.0.0.0/33" in line for line in lines)
    assert any("processing.workers" in line for line in lines)
    assert any(
        "processing.transfer_syntax: 'jpeg': use one of explicit-little-endian, jpeg2000-lossless" in line
        for line in lines
    )
    assert any("destinations.archive.transfer_syntax: 'rle': use one of" in line for line in lines)


def test_config_environment_overrides(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('[node]\nae_title = "FROMFILE"\nport = 104\n[paths]\nspool = "spool"\n')
    config = load_config(
        path,
        environ={"CXRXAI_NODE_NODE_PORT": "11113", "CXRXAI_NODE_NODE_ALLOWED_CALLING_AE_TITLES": '["PACS"]',
                 "CXRXAI_NODE_NODE_TLS_REQUIRE_CLIENT_CERTIFICATE": "false"},
    )  # fmt: skip
    assert config.node.port == 11113 and config.node.ae_title == "FROMFILE"
    assert config.node.allowed_calling_ae_titles == ("PACS",)
    assert config.paths.spool == tmp_path / "spool"  # relative to the file
    with pytest.raises(ConfigError, match="CXRXAI_NODE_NOPE_X"):
        load_config(path, environ={"CXRXAI_NODE_NOPE_X": "1"})


def test_cli_reports_bad_config_in_one_line(tmp_path, capsys):
    from cxrxai.cli import main

    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) != 0
    assert "no such configuration file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("tags", "process", "reason"),
    [
        ({}, True, "chest radiograph"),
        ({"Modality": "CT"}, False, "modality CT"),
        ({"BodyPartExamined": None, "StudyDescription": "XR CHEST 2 VIEWS"}, True, "from the description"),
        ({"BodyPartExamined": None}, True, "assumed chest"),
        ({"ViewPosition": None, "SeriesDescription": "CHEST LAT"}, False, "lateral"),
        ({"ViewPosition": None}, True, "assumed frontal"),
        ({"ViewPosition": "LL"}, False, "view position LL"),
    ],
)
def test_routing(tmp_path, tags, process, reason):
    from dicom_node.config import RoutingSection

    dataset = dcmread(write_radiograph(tmp_path / "x.dcm", seed=0, **tags))
    decision = route(dataset, RoutingSection())
    assert decision.process is process and reason in decision.reason


def test_store_claims_each_job_once_and_queues_each_delivery_once(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    for i in range(20):
        store.record_instance(f"1.2.{i}", f"1.3.{i}", "1.4", "1.2.840.10008.5.1.4.1.1.1", tmp_path / "x", "A")
    assert store.promote_quiet_studies(0.0, now=1e12) == 20
    claimed: list[str] = []

    def worker(name: str) -> None:
        local = Store(tmp_path / "s.sqlite")
        while (job := local.claim_job(name)) is not None:
            claimed.append(job.study_instance_uid)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(f"1.3.{i}" for i in range(20))  # every job, each exactly once
    for _ in range(2):  # a job re-run after a crash commits the same results again
        store.commit_results(
            "1.3.0", "1.2.0", [("9.9", tmp_path / "sr.dcm")], [("pacs", "dicom")], urgent=False
        )
    assert len(store.deliveries(("pending",))) == 1
    assert store.requeue_in_flight() == 20


def _certificates(folder: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=cxrxai test CA")  # fmt: skip
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}")  # fmt: skip
        (folder / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip
    return {p.stem + p.suffix: p for p in folder.iterdir()}


def test_tls_with_and_without_client_certificate(tiny_bundle, tmp_path):
    import ssl

    from pynetdicom import AE

    from dicom_node.service import Node

    pki = _certificates(tmp_path / "pki")
    tls = {"enabled": True, "certificate": str(pki["server.pem"]), "private_key": str(pki["server.key"]),
           "ca_certificates": str(pki["ca.pem"]), "require_client_certificate": True}  # fmt: skip
    node = Node(load_config(node_toml(tmp_path, tiny_bundle, free_port(), [], node={"tls": tls})))
    node.start()

    def echo(with_certificate: bool) -> bool:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca.pem"]))
        context.check_hostname = False
        if with_certificate:
            context.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
        ae = AE(ae_title="ECHOSCU")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", node.port, ae_title="CXRXAI", tls_args=(context, "127.0.0.1"))
        if not assoc.is_established:
            return False
        status = assoc.send_c_echo()
        assoc.release()
        return status.Status == 0x0000

    try:
        assert echo(with_certificate=True)
        assert not echo(with_certificate=False)
        plain = dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", "CXRXAI", "127.0.0.1", str(node.port))
        assert plain.returncode != 0  # no TLS at all: refused too
    finally:
        node.stop()


def test_documented_configuration_loads(tmp_path):
    """docs/node.md lists every key with its default: that block must be a valid configuration."""
    text = (Path(__file__).parent.parent / "docs" / "node.md").read_text()
    block = text.split("```toml\n")[1].split("```")[0]
    (tmp_path / "node.toml").write_text(block)
    config = load_config(tmp_path / "node.toml", environ={})
    assert config.node.port == 11112 and [d.name for d in config.destinations] == ["pacs", "archive"]
    assert config.destinations[1].folder == Path("/srv/cxrxai/results") and config.processing.bundle is None


def test_outbox_commands_list_and_resend_dead_letters(tiny_bundle, tmp_path, capsys):
    from cxrxai.cli import main

    config_path = node_toml(tmp_path, tiny_bundle, free_port(), [])
    store = Store(load_config(config_path).paths.database)
    store.record_instance("1.2.1", "1.3.1", "1.4", "1.2.840.10008.5.1.4.1.1.1", tmp_path / "x", "A")
    store.commit_results("1.3.1", "1.2.1", [("9.1", tmp_path / "sr.dcm")], [("pacs", "dicom")], urgent=False)
    delivery = store.deliveries(("pending",))[0]
    assert store.delivery_failed(delivery.id, "pacs answered status 0xA700", 0.0, max_attempts=1) == "dead"
    assert main(["node", "deliveries", "--config", str(config_path)]) == 0
    listing = capsys.readouterr().out
    assert "dead" in listing and "0xA700" in listing and "1 deliveries" in listing
    assert main(["node", "resend", "--config", str(config_path)]) == 0
    assert "1 deliveries queued again" in capsys.readouterr().out
    assert [d.state for d in store.deliveries(("pending", "dead"))] == ["pending"]


def test_results_to_a_tls_destination(tiny_bundle, tmp_path):
    """The node presents its certificate to a DCMTK storescp that requires one and verifies it with
    the same CA; the results arrive over TLS."""
    from dicom_node.service import Node

    pki = _certificates(tmp_path / "pki")
    pacs_port = free_port()
    tls = {"enabled": True, "certificate": str(pki["client.pem"]), "private_key": str(pki["client.key"]),
           "ca_certificates": str(pki["ca.pem"])}  # fmt: skip
    destination = {
        "name": "pacs",
        "ae_title": "STORESCP",
        "host": "127.0.0.1",
        "port": pacs_port,
        "tls": True,
    }
    node = Node(load_config(node_toml(tmp_path, tiny_bundle, free_port(), [destination], node={"tls": tls})))
    options = ("+tls", str(pki["server.key"]), str(pki["server.pem"]), "+cf", str(pki["ca.pem"]), "-rc")
    with storescp(tmp_path / "pacs", pacs_port, "STORESCP", True, *options):
        node.start()
        try:
            from pynetdicom import AE

            ae = AE(ae_title="STORESCU")
            ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1")
            source = dcmread(write_radiograph(tmp_path / "cr.dcm", seed=30))
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca.pem"]))
            context.check_hostname = False
            context.load_cert_chain(str(pki["server.pem"]), str(pki["server.key"]))
            assoc = ae.associate("127.0.0.1", node.port, ae_title="CXRXAI", tls_args=(context, "127.0.0.1"))
            assert assoc.is_established and assoc.send_c_store(source).Status == 0
            assoc.release()
            wait_for(lambda: node.store.counts()["deliveries"].get("sent", 0) > 0
                     and not node.store.deliveries(("pending",)), 120, what="delivery over TLS")  # fmt: skip
            modalities = {dcmread(p, stop_before_pixels=True).Modality for p in (tmp_path / "pacs").iterdir()}
            assert modalities == RESULT_MODALITIES
        finally:
            node.stop()


def test_compressed_transfer_syntaxes_are_received_and_explained(running, tmp_path):
    """JPEG-LS and JPEG lossless (DCMTK's encoders), proposed as such by storescu: accepted and spooled
    as they are, then explained."""
    node = running["node"]
    study = generate_uid()
    plain = write_radiograph(tmp_path / "plain.dcm", seed=40, StudyInstanceUID=study)
    jpeg_ls = tmp_path / "jpeg-ls.dcm"
    assert dcmtk("dcmcjpls", str(plain), str(jpeg_ls)).returncode == 0
    jpeg = tmp_path / "jpeg-lossless.dcm"
    second = write_radiograph(tmp_path / "plain2.dcm", seed=41, StudyInstanceUID=study)
    assert dcmtk("dcmcjpeg", str(second), str(jpeg)).returncode == 0
    assert dcmread(jpeg_ls).file_meta.TransferSyntaxUID.is_compressed
    for option, path in (("-xt", jpeg_ls), ("-xs", jpeg)):  # storescu proposes the file's syntax
        sent = dcmtk(
            "storescu", option, "-aet", "STORESCU", "-aec", "CXRXAI", "127.0.0.1", str(node.port), str(path)
        )
        assert sent.returncode == 0, sent.stderr
    assert wait_for(lambda: _study_finished(node.store, study))["state"] == "done"
    stored = list((running["config"].paths.spool / study).iterdir())
    assert {str(dcmread(p).file_meta.TransferSyntaxUID) for p in stored} == {
        str(dcmread(jpeg_ls).file_meta.TransferSyntaxUID),
        str(dcmread(jpeg).file_meta.TransferSyntaxUID),
    }  # spooled exactly as received
    assert {state for state, _ in node.store.instance_states(study).values()} == {"done"}


def test_refusal_reasons(tmp_path):
    """Address outside the allowed networks: rejected-permanent, service-user, no reason given; disk
    above the limit: rejected-transient, service-provider, local limit exceeded (the same path the
    admission-control test takes end to end)."""
    import ipaddress

    from dicom_node.scp import REJECT_ADDRESS, REJECT_DISK_FULL, _refusal

    networks = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.20")]
    assert _refusal("127.0.0.1", networks, tmp_path, 100.0) == (REJECT_ADDRESS, "address")
    assert _refusal("10.2.3.4", networks, tmp_path, 100.0) is None
    assert _refusal("192.168.1.20", networks, tmp_path, 100.0) is None
    assert _refusal("10.2.3.4", networks, tmp_path, 0.0001) == (REJECT_DISK_FULL, "disk-full")
    assert _refusal("127.0.0.1", [], tmp_path, 100.0) is None
    assert REJECT_ADDRESS == (0x01, 0x01, 0x01) and REJECT_DISK_FULL == (0x02, 0x03, 0x02)


def test_poisoned_images_fail_alone_and_every_good_result_arrives(tiny_bundle, tmp_path, monkeypatch):
    """One study mixing good images (CR, DX, a 64 px CR, one with an 8 MB private element, one without
    Body Part Examined), a lateral to skip, a colour CR the reader refuses, one image whose SR writer
    raises (poisoned: it fails alone, after its own retries) and one whose presentation-state writer raises
    (its other objects still go out, the reason is kept). The worker runs in this process, where the
    writers are patched; receiving, scheduling and sending are the real node's."""
    import cxrxai.dicom.result_objects as results_module
    from cxrxai.io.sop_classes import DX_FOR_PRESENTATION
    from cxrxai.samples import chest_image, radiograph_dataset
    from dicom_node.metrics import Metrics
    from dicom_node.processing import Worker
    from dicom_node.queues import EmbeddedQueue
    from dicom_node.service import Node

    study = generate_uid()
    files = {
        "good": write_radiograph(tmp_path / "good.dcm", seed=11, StudyInstanceUID=study),
        "no body part": write_radiograph(tmp_path / "nobody.dcm", seed=12, StudyInstanceUID=study,
                                         BodyPartExamined=None),
        "lateral": write_radiograph(tmp_path / "lat.dcm", seed=13, StudyInstanceUID=study, ViewPosition="LL"),
        "poisoned SR": write_radiograph(tmp_path / "sr.dcm", seed=14, StudyInstanceUID=study),
        "poisoned GSPS": write_radiograph(tmp_path / "pr.dcm", seed=15, StudyInstanceUID=study),
    }  # fmt: skip
    dx = radiograph_dataset(chest_image(96, 80, seed=16), bits=12, sop_class=DX_FOR_PRESENTATION)
    small = radiograph_dataset(chest_image(64, 56, seed=17), bits=12)
    large = radiograph_dataset(chest_image(96, 80, seed=18), bits=12)
    large.private_block(0x0011, "CXRXAI TEST", create=True).add_new(0x01, "OB", bytes(8 * 1024 * 1024))
    colour = radiograph_dataset(chest_image(96, 80, seed=19), bits=12)
    colour.PhotometricInterpretation = "RGB"
    for name, dataset in (("dx", dx), ("64 px", small), ("8 MB private", large), ("colour", colour)):
        dataset.StudyInstanceUID = study
        files[name] = tmp_path / f"{name.replace(' ', '-')}.dcm"
        dataset.save_as(files[name], enforce_file_format=True)
    uids = {name: str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for name, path in files.items()}

    real_sr, real_gsps = results_module.build_sr, results_module.build_gsps
    sr_calls = []

    def poisoned_sr(source, *args, **kwargs):
        if str(source.SOPInstanceUID) == uids["poisoned SR"]:
            sr_calls.append(1)
            raise KeyError("poison in the SR writer")
        return real_sr(source, *args, **kwargs)

    def poisoned_gsps(source, *args, **kwargs):
        if str(source.SOPInstanceUID) == uids["poisoned GSPS"]:
            raise TypeError("a bytes-like object is required, not 'list'")
        return real_gsps(source, *args, **kwargs)

    monkeypatch.setattr(results_module, "build_sr", poisoned_sr)
    monkeypatch.setattr(results_module, "build_gsps", poisoned_gsps)
    monkeypatch.setattr(EmbeddedQueue, "start", lambda self: None)  # the worker below takes the jobs
    config = load_config(
        node_toml(tmp_path / "node", tiny_bundle, free_port(), [{"name": "archive", "folder": "archive"}])
    )
    node = Node(config)
    node.start()
    stopping = threading.Event()

    def work() -> None:
        worker = Worker(config, Store(config.paths.database), Metrics(), "in-test")
        while not stopping.is_set():
            if not worker.run_once():
                stopping.wait(0.2)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        assert _send(node, *files.values()).returncode == 0
        finished = wait_for(lambda: _study_finished(node.store, study), timeout=180, what="the study")
        states = {name: node.store.instance_states(study)[uid] for name, uid in uids.items()}
        for name in ("good", "no body part", "dx", "64 px", "8 MB private"):
            assert states[name] == ("done", None), (name, states[name])
        assert states["lateral"][0] == "skipped" and "view position LL" in states["lateral"][1]
        assert states["colour"][0] == "failed" and "colour image (RGB" in states["colour"][1]
        assert states["poisoned SR"] == (
            "failed", "KeyError: 'poison in the SR writer' (after 2 attempts)"
        ) and len(sr_calls) == 2  # fmt: skip
        assert states["poisoned GSPS"] == (
            "done", "presentation state not made (TypeError: a bytes-like object is required, not 'list')"
        )  # fmt: skip
        assert finished["state"] == "done" and finished["reason"] == "6 done, 1 skipped, 2 failed"
        pending = lambda: [d for d in node.store.deliveries(("pending",)) if d.study_instance_uid == study]  # noqa: E731
        wait_for(lambda: not pending(), what="deliveries")
        archive = config.paths.database.parent / "archive"
        archived = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in archive.iterdir()}
        made = {  # the node keeps each source's results under results/<study>/<source SOP Instance UID>
            name: {p.name.split("-", 1)[1].removesuffix(".dcm"): p.name.split("-")[0]
                   for p in (config.paths.results / study / uid).glob("*.dcm")}
            for name, uid in uids.items() if (config.paths.results / study / uid).is_dir()
        }  # fmt: skip
        assert set(made) == {"good", "no body part", "dx", "64 px", "8 MB private", "poisoned GSPS"}
        for name, objects in made.items():
            assert set(objects) <= archived, name  # every result of every good image arrived
        assert sorted(set(made["good"].values())) == ["OT", "PR", "SEG", "SR"]
        assert sorted(set(made["poisoned GSPS"].values())) == ["OT", "SEG", "SR"]
    finally:
        stopping.set()
        thread.join(60)
        node.stop()
