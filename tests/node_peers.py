"""Real DICOM peers for the node tests: DCMTK storescp / echoscu / storescu and Orthanc, on loopback
ports chosen at run time, a webhook endpoint, plus helpers to write node configurations and sample
radiographs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cxrxai.samples import chest_image, radiograph_dataset
from dicom_node.orthanc import Orthanc
from dicom_node.ports import free_port, listening

# DCMTK since 3.6.2 leaves Nagle's algorithm on unless TCP_NODELAY=1, so each of its small DIMSE writes
# waits for the peer's delayed acknowledgement (about 40 ms per C-STORE on loopback); archives turn it off
# (Orthanc builds DCMTK with DISABLE_NAGLE_ALGORITHM), and so do our peers
DCMTK_ENVIRONMENT = {**os.environ, "TCP_NODELAY": "1"}


def wait_for(
    condition: Callable[[], object], timeout: float = 60.0, every: float = 0.1, what: str = ""
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition}")


class Webhook:
    """A local HTTP endpoint that records the JSON bodies posted to it."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"


@contextmanager
def storescp(
    folder: Path, port: int, ae_title: str = "STORESCP", verbose: bool = True, *options: str
) -> Iterator[subprocess.Popen]:
    """DCMTK storescp writing every received object to `folder`; with `verbose`, a log of every request
    at folder/../storescp-<port>.log."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"storescp-{port}.log", "ab") as log:
        command = [
            "storescp",
            *(["-v"] if verbose else []),
            *options,
            "-aet",
            ae_title,
            "-od",
            str(folder),
            "-uf",
            str(port),
        ]
        process = subprocess.Popen(command, stdout=log, stderr=log, env=DCMTK_ENVIRONMENT)
        try:
            wait_for(lambda: listening(port) or process.poll() is not None, 20, what=f"storescp on {port}")
            if process.poll() is not None:
                raise RuntimeError(f"storescp exited with {process.returncode}: see {log.name}")
            yield process
        finally:
            process.terminate()
            process.wait(10)


def received_store_requests(folder: Path, port: int) -> int:
    """How many C-STORE requests storescp on `port` has received (duplicates counted)."""
    log = folder.parent / f"storescp-{port}.log"
    return log.read_text(errors="replace").count("Received Store Request") if log.is_file() else 0


def dcmtk(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=60, env=DCMTK_ENVIRONMENT)


@contextmanager
def orthanc(root: Path, modalities: dict[str, tuple[str, str, int]]) -> Iterator[dict]:
    """Orthanc (the Debian package, `dicom_node.orthanc`) with its own storage, DICOM and HTTP ports;
    yields its addresses."""
    with Orthanc(root, modalities=modalities, dicomweb=False) as pacs:
        yield {"http": pacs.url, "dicom_port": pacs.dicom_port, "ae_title": pacs.ae_title}


def rest(url: str, data: bytes | None = None, method: str | None = None):
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def write_radiograph(path: Path, seed: int, **tags) -> Path:
    """A small chest CR (new UIDs) with any tags overridden or, given None, removed."""
    dataset = radiograph_dataset(chest_image(96, 80, seed=seed), bits=12)
    for keyword, value in tags.items():
        if value is None:
            if keyword in dataset:
                delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


def node_toml(root: Path, bundle: Path, port: int, destinations: list[dict], **sections) -> Path:
    """A node.toml under `root`: quick quiet period and retries, the given destinations and sections."""
    config = {
        "node": {
            "ae_title": "CXRXAI",
            "bind_address": "127.0.0.1",
            "port": port,
            "study_quiet_seconds": 0.5,
            "allowed_calling_ae_titles": ["STORESCU", "ECHOSCU", "ORTHANC"],
            # the host's disk, shared with other jobs, must not refuse associations mid-run; the
            # admission-control test sets its own limit
            "max_disk_use_percent": 100.0,
        },
        "paths": {
            "spool": "spool",
            "database": "node.sqlite",
            "results": "results",
            "audit_log": "audit.log",
            "index": "results.sqlite",
        },
        "processing": {"bundle": str(bundle), "workers": 1, "methods": ["gradcam"]},
        "retry": {"initial_delay_seconds": 0.3, "max_delay_seconds": 1.0, "max_attempts": 50},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    lines = []
    for name, values in config.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    for destination in destinations:
        lines.append("[[destinations]]")
        lines += [f"{key} = {_toml(value)}" for key, value in destination.items()]
    root.mkdir(parents=True, exist_ok=True)
    path = root / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """redis-server on a free loopback port, no persistence; yields its URL."""
    executable = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(executable).is_file():
        pytest.skip("redis-server missing: `make test` installs the Debian package")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "redis.log", "ab") as log:
        process = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(folder)],
            stdout=log, stderr=log,
        )  # fmt: skip
        try:
            wait_for(lambda: listening(port), 20, what="redis-server")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(20)
