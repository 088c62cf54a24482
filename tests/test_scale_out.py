"""Scale-out: the node dispatches jobs to a Celery queue on a real Redis server (Debian package, loopback
port chosen at run time); two `cxrxai worker` processes explain them from the shared spool. Every job is
done once, a worker killed mid-job has its job redone by the other, and the results equal the embedded
mode's."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread

from cxrxai.dicom.result_objects import build_dicom_results
from cxrxai.dicom.sr import read_sr
from cxrxai.explain import Explainer
from cxrxai.io import read_radiograph
from dicom_node.config import load_config
from tests.node_peers import (
    dcmtk,
    free_port,
    node_toml,
    received_store_requests,
    redis_server,
    storescp,
    wait_for,
    write_radiograph,
)

VISIBILITY_SECONDS = 6  # longer than one tiny-model job here; short, so the redelivery test is quick


def _worker(config_path: Path, name: str, log: Path) -> subprocess.Popen:
    """A `cxrxai worker` with one CPU thread: the tests run up to two on a 2-core machine."""
    return subprocess.Popen(
        [sys.executable, "-m", "cxrxai.cli", "worker", "--config", str(config_path), "--name", name,
         "--threads", "1"],  # fmt: skip
        start_new_session=True,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )


def test_two_remote_workers_every_job_once_a_killed_workers_job_redone(tiny_bundle, tmp_path):
    from dicom_node.service import Node

    pacs_port = free_port()
    with redis_server(tmp_path / "redis") as broker:
        config_path = node_toml(
            tmp_path / "node",
            tiny_bundle,
            free_port(),
            [{"name": "pacs", "ae_title": "STORESCP", "host": "127.0.0.1", "port": pacs_port}],
            queue={
                "backend": "celery",
                "broker_url": broker,
                "visibility_timeout_seconds": VISIBILITY_SECONDS,
            },
        )
        config = load_config(config_path)
        sources = [write_radiograph(tmp_path / "in" / f"{i}.dcm", seed=40 + i) for i in range(4)]
        node = Node(config, stop_timeout=30)
        workers = {name: _worker(config_path, name, tmp_path / f"{name}.log") for name in ("wa", "wb")}
        pacs = storescp(tmp_path / "pacs", pacs_port)  # up all along: deliveries are not what is tested
        pacs.__enter__()
        try:
            node.start()
            for name in workers:
                wait_for(lambda n=name: "ready" in (tmp_path / f"{n}.log").read_text(errors="replace"), 120,
                         what=f"worker {name}")  # fmt: skip
                assert "1 CPU threads" in (tmp_path / f"{name}.log").read_text(errors="replace")  # --threads
            send = ("storescu", "-aet", "STORESCU", "-aec", "CXRXAI", "127.0.0.1", str(config.node.port))
            # one study first: kill the worker that runs it, mid-job
            assert dcmtk(*send, str(sources[0])).returncode == 0
            first_study = str(dcmread(sources[0]).StudyInstanceUID)

            def running_task():
                for job, task_id in node.store.dispatched():
                    result = node.queue.app.AsyncResult(task_id)
                    if job.study_instance_uid == first_study and result.state == "STARTED":
                        return result.info["pid"]
                return None

            pid = wait_for(running_task, 60, 0.02, "the first task running")
            victim = next(name for name, process in workers.items() if process.pid == pid)
            os.killpg(workers[victim].pid, signal.SIGKILL)
            workers[victim].wait()
            # the rest while the survivor waits for the first job to come back from the broker
            assert dcmtk(*send, *map(str, sources[1:])).returncode == 0
            studies = {str(dcmread(p).StudyInstanceUID) for p in sources}

            def states():
                return {s: node.store.study(s)["state"] for s in studies if node.store.study(s)}

            wait_for(lambda: set(states().values()) == {"done"} and len(states()) == 4, 180,
                     what="all studies done by the surviving worker")  # fmt: skip
            survivor = next(name for name in workers if name != victim)
            survivor_log = (tmp_path / f"{survivor}.log").read_text(errors="replace")
            assert survivor_log.count("succeeded") >= 4  # it redid the killed worker's job too
            wait_for(
                lambda: not [d for d in node.store.deliveries(("pending", "dead"))], 90, what="deliveries"
            )
            expected = len(node.store.deliveries(("sent",)))
            received = [dcmread(p) for p in (tmp_path / "pacs").iterdir()]
            assert {d.StudyInstanceUID for d in received} == studies
            assert len({d.SOPInstanceUID for d in received}) == expected
            assert received_store_requests(tmp_path / "pacs", pacs_port) == expected  # each exactly once
        finally:
            node.stop()
            pacs.__exit__(None, None, None)
            for process in workers.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(60)
    # the results equal the embedded mode's: the same objects (deterministic UIDs) and findings
    explainer = Explainer.from_bundle(tiny_bundle)
    delivered = {d.SOPInstanceUID: d for d in received}
    for source in sources:
        radiograph = read_radiograph(source)
        assert radiograph.dataset is not None
        explanation = explainer.explain(radiograph, methods=config.processing.methods)
        embedded = build_dicom_results(explanation, radiograph.dataset, radiograph.pixels).datasets
        missing = [(d.Modality, d.SOPInstanceUID) for d in embedded if d.SOPInstanceUID not in delivered]
        assert not missing, (missing, sorted((d.Modality, d.StudyInstanceUID) for d in delivered.values()))
        sr = next(d for d in embedded if d.Modality == "SR")
        ours, theirs = read_sr(delivered[sr.SOPInstanceUID]), read_sr(sr)
        for a, b in zip(ours.findings, theirs.findings, strict=True):
            assert a.name == b.name and a.probability == pytest.approx(b.probability, abs=1e-6)


def test_worker_refuses_an_embedded_configuration(tiny_bundle, tmp_path, capsys):
    from cxrxai.cli import main

    config_path = node_toml(tmp_path, tiny_bundle, free_port(), [])
    assert main(["worker", "--config", str(config_path)]) == 2
    assert 'backend = "celery"' in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[queue]\nbackend = "celery"\nbroker_url = "amqp://x"\nvisibility_timeout_seconds = 0\n')
    assert main(["worker", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "queue.broker_url" in err and "queue.visibility_timeout_seconds" in err
    bad.write_text('[storage]\nkind = "s3"\n')
    assert main(["worker", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "storage.s3_bucket" in err and 'needs queue.backend = "celery"' in err
    for threads in ("0", "two", "-1"):
        with pytest.raises(SystemExit) as refused:
            main(["worker", "--config", str(config_path), "--threads", threads])
        assert refused.value.code == 2
        assert f"{threads!r} is not a number of threads (1 or more)" in capsys.readouterr().err


def _batch_config(root: Path, bundle: Path, **queue) -> Path:
    return (
        node_toml(root, bundle, free_port(), [], queue=queue)
        if queue
        else node_toml(root, bundle, free_port(), [])
    )


def test_batch_locally_is_resumable_and_picks_up_new_files(tiny_bundle, tmp_path, capsys):
    from cxrxai.cli import main
    from cxrxai.index import ResultsIndex

    archive = tmp_path / "archive"
    for i in range(2):
        write_radiograph(archive / f"{i}.dcm", seed=60 + i)
    (archive / "notes.txt").write_text("not a radiograph")
    config_path = _batch_config(tmp_path / "node", tiny_bundle)
    command = ["batch", str(archive), "--config", str(config_path), "--state", str(tmp_path / "state.sqlite"),
               "--no-progress"]  # fmt: skip
    assert main(command) == 0
    assert (
        "2 studies: 0 already done, 2 done, 0 skipped, 0 failed; 1 files not DICOM" in capsys.readouterr().out
    )
    index = ResultsIndex(load_config(config_path).paths.index_location)
    assert index.query().sop_instance_uid.nunique() == 2
    assert main(command) == 0  # nothing left to do
    assert "2 studies: 2 already done, 0 done" in capsys.readouterr().out
    write_radiograph(archive / "2.dcm", seed=62)  # the archive grew
    assert main(command) == 0
    assert "3 studies: 2 already done, 1 done" in capsys.readouterr().out
    assert index.query().sop_instance_uid.nunique() == 3
    assert main(["batch", str(tmp_path / "missing"), "--config", str(config_path)]) == 2


def test_batch_through_celery_survives_its_own_interruption(tiny_bundle, tmp_path, capsys):
    from cxrxai.cli import main
    from cxrxai.index import ResultsIndex

    archive = tmp_path / "archive"
    for i in range(3):
        write_radiograph(archive / f"{i}.dcm", seed=70 + i)
    with redis_server(tmp_path / "redis") as broker:
        config_path = _batch_config(tmp_path / "node", tiny_bundle, backend="celery", broker_url=broker,
                                    visibility_timeout_seconds=VISIBILITY_SECONDS)  # fmt: skip
        state = tmp_path / "state.sqlite"
        command = [
            "batch",
            str(archive),
            "--config",
            str(config_path),
            "--state",
            str(state),
            "--no-progress",
        ]
        first = subprocess.Popen([sys.executable, "-m", "cxrxai.cli", *command], start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        worker = _worker(config_path, "wbatch", tmp_path / "worker.log")
        try:

            def sent() -> int:
                if not state.is_file():
                    return 0
                with sqlite3.connect(state, timeout=30) as db:
                    return db.execute("SELECT COUNT(*) FROM studies WHERE state = 'sent'").fetchone()[0]

            wait_for(lambda: sent() == 3, 60, 0.05, "the batch sending its tasks")
            os.killpg(first.pid, signal.SIGKILL)  # the batch dies; its tasks go on in the worker
            first.wait()
            assert main(command) == 0  # run again: collects what the first run sent, sends nothing twice
            out = capsys.readouterr().out
            assert "3 studies: 0 already done, 3 done, 0 skipped, 0 failed" in out
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(60)
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert log.count("succeeded") == 3  # each study explained once
    remote = ResultsIndex(load_config(config_path).paths.index_location).query()
    # the same archive explained locally gives the same results
    local_config = _batch_config(tmp_path / "local", tiny_bundle)
    local_state = str(tmp_path / "local.sqlite")
    local_command = [
        "batch",
        str(archive),
        "--config",
        str(local_config),
        "--state",
        local_state,
        "--no-progress",
    ]
    assert main(local_command) == 0
    local = ResultsIndex(load_config(local_config).paths.index_location).query()
    columns = ["sr_sop_instance_uid", "finding", "present"]
    assert (
        remote[columns].sort_values(columns).values.tolist()
        == local[columns].sort_values(columns).values.tolist()
    )
    assert remote.sort_values(columns).probability.values == pytest.approx(
        local.sort_values(columns).probability.values, abs=1e-6
    )


def test_batch_from_a_pacs_query(tiny_bundle, tmp_path, capsys):
    from cxrxai.cli import main
    from cxrxai.index import ResultsIndex
    from tests.node_peers import orthanc, rest

    sources = [write_radiograph(tmp_path / "in" / f"{i}.dcm", seed=80 + i) for i in range(2)]
    lateral = write_radiograph(tmp_path / "in" / "lateral.dcm", seed=82, ViewPosition="LL")  # skipped
    config_path = _batch_config(tmp_path / "node", tiny_bundle)
    with orthanc(tmp_path / "orthanc", {"cxrxai": ("CXRXAI", "127.0.0.1", free_port())}) as pacs:
        for path in [*sources, lateral]:
            rest(f"{pacs['http']}/instances", path.read_bytes())
        state = str(tmp_path / "state.sqlite")
        command = ["batch", "--pacs", f"ORTHANC@127.0.0.1:{pacs['dicom_port']}", "--config", str(config_path),
                   "--into", str(tmp_path / "got"), "--state", state, "--no-progress"]  # fmt: skip
        assert main(command) == 0
        out = capsys.readouterr().out
        assert (
            "3 radiographs found, 3 retrieved" in out
            and "3 studies: 0 already done, 2 done, 1 skipped" in out
        )
        assert main(command) == 0  # again: nothing retrieved twice, nothing explained twice
        out = capsys.readouterr().out
        assert "3 radiographs found, 0 retrieved" in out and "3 studies: 3 already done, 0 done" in out
    rows = ResultsIndex(load_config(config_path).paths.index_location).query()
    assert set(rows.sop_instance_uid) == {str(dcmread(p).SOPInstanceUID) for p in sources}


def test_s3_storage_carries_instances_and_results_between_machines(tiny_bundle, tmp_path, monkeypatch):
    """Node and worker share no folder: instances and results travel through S3-compatible storage.
    The S3 side is moto's S3 server on loopback (an emulator of the S3 HTTP API; no real S3 or MinIO
    is available here)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from cxrxai.index import ResultsIndex
    from dicom_node.service import Node

    for name, value in (("AWS_ACCESS_KEY_ID", "cxrxai"), ("AWS_SECRET_ACCESS_KEY", "cxrxai-secret"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    s3.start()
    host, port = s3.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="cxrxai-results")
    pacs_port = free_port()
    sources = [write_radiograph(tmp_path / "in" / f"{i}.dcm", seed=90 + i) for i in range(2)]
    try:
        with redis_server(tmp_path / "redis") as broker, storescp(tmp_path / "pacs", pacs_port, verbose=True):
            shared = {
                "queue": {
                    "backend": "celery",
                    "broker_url": broker,
                    "visibility_timeout_seconds": VISIBILITY_SECONDS,
                },
                "storage": {"kind": "s3", "s3_bucket": "cxrxai-results", "s3_endpoint_url": endpoint},
            }
            index = str(
                tmp_path / "shared-index.sqlite"
            )  # the shared index database (PostgreSQL in practice)
            destinations = [{"name": "pacs", "ae_title": "STORESCP", "host": "127.0.0.1", "port": pacs_port}]
            node_config = node_toml(tmp_path / "node", tiny_bundle, free_port(), destinations, **shared)
            worker_config = node_toml(tmp_path / "worker", tiny_bundle, free_port(), [], **shared)
            for path in (node_config, worker_config):
                path.write_text(path.read_text().replace('index = "results.sqlite"', f'index = "{index}"'))
            config = load_config(node_config)
            node = Node(config, stop_timeout=30)
            worker = _worker(worker_config, "ws3", tmp_path / "worker.log")
            try:
                node.start()
                send = ("storescu", "-aet", "STORESCU", "-aec", "CXRXAI", "127.0.0.1", str(config.node.port))
                assert dcmtk(*send, *map(str, sources)).returncode == 0
                studies = {str(dcmread(p).StudyInstanceUID) for p in sources}
                done = lambda: all((node.store.study(s) or {"state": ""})["state"] == "done" for s in studies)  # noqa: E731
                wait_for(done, 120, what="both studies done by the worker")
                wait_for(lambda: not node.store.deliveries(("pending", "dead")), 60, what="deliveries")
                sent = node.store.deliveries(("sent",))
                assert received_store_requests(tmp_path / "pacs", pacs_port) == len(sent) > 0
            finally:
                node.stop()
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(60)
        worker_results = {
            p.relative_to(tmp_path / "worker" / "results")
            for p in (tmp_path / "worker" / "results").rglob("*.dcm")
        }
        node_results = {
            p.relative_to(tmp_path / "node" / "results")
            for p in (tmp_path / "node" / "results").rglob("*.dcm")
        }
        assert worker_results and worker_results == node_results  # made by the worker, fetched by the node
        worker_spool = list((tmp_path / "worker" / "spool").rglob("*.dcm"))
        assert len(worker_spool) == 2  # the instances reached the worker through the bucket
        keys = {
            o["Key"]
            for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket="cxrxai-results")[
                "Contents"
            ]
        }
        assert {k.split("/")[1] for k in keys} == {"spool", "results"} and len(keys) == 2 + len(
            worker_results
        )
        objects = ResultsIndex(index).objects()
        assert objects and all(Path(o.path).is_relative_to(tmp_path / "node" / "results") for o in objects)
    finally:
        s3.stop()
