"""Node benchmarks, each against a reference measured in the same run on the same files.

1. Receive throughput: DCMTK storescu sends the same N chest radiographs to DCMTK storescp (+B:
   bit-preserving, writes files, no fsync) and to our node (spool file fsync'ed, folder fsync'ed,
   SQLite WAL commit with synchronous=FULL, per instance). The node's quiet period is set to an hour
   so no job competes with receiving. Ratio = node / storescp images per second (target >= 0.8).
2. End-to-end latency with the shipped default bundle (or an untrained one of the same shape): five
   single-image studies one after another into an empty queue, then a burst of 50 at once;
   latency = C-STORE received to the last result object acknowledged by the destination (a DCMTK
   storescp), from the node's own records. Peak memory: the highest resident set (VmHWM) of the
   node process and of its workers. The studies are phantoms (the default model's domain).
DCMTK's tools run with TCP_NODELAY=1, Nagle's algorithm off, as archives run it (`tests.node_peers`);
without it every C-STORE to or from them waits about 40 ms for a delayed acknowledgement.

Usage: python bench/bench_node.py [--images 200] [--burst 50] [--workers 1] [--code CHECKOUT]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEQUENTIAL = 5  # single-image studies sent one after another into an empty queue
sys.path.insert(0, str(ROOT))

from dicom_node.config import load_config  # noqa: E402
from tests.node_peers import DCMTK_ENVIRONMENT, free_port, node_toml, storescp, wait_for  # noqa: E402


def send(folder: Path, port: int, ae_title: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        ["storescu", "-aet", "STORESCU", "-aec", ae_title, "+sd", "127.0.0.1", str(port), str(folder)],
        capture_output=True,
        text=True,
        env=DCMTK_ENVIRONMENT,
    )
    if result.returncode != 0:
        raise SystemExit(f"storescu failed: {result.stderr.strip()}")
    return time.perf_counter() - started


def make_images(folder: Path, count: int, rows: int) -> None:
    from cxrxai.samples import chest_image, radiograph_dataset

    folder.mkdir(parents=True)
    for i in range(count):
        dataset = radiograph_dataset(chest_image(rows, int(rows * 0.9), seed=i), bits=12)
        dataset.save_as(folder / f"{i:05d}.dcm", enforce_file_format=True)


CODE = ROOT  # the checkout the node runs from (`--code`)


def start_node(config_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dicom_node", "--config", str(config_path)],
        cwd=CODE,  # first on the node's sys.path: a checkout given by --code shadows the installed one
        stdout=subprocess.DEVNULL,
        stderr=open(config_path.parent / "node.log", "ab"),  # noqa: SIM115 (lives as long as the node)
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(120)


def echo_ok(port: int) -> bool:
    return subprocess.run(["echoscu", "-aet", "ECHOSCU", "-aec", "CXRXAI", "127.0.0.1", str(port)],
                          capture_output=True).returncode == 0  # fmt: skip


def peak_memory_mb(pid: int) -> float:
    """VmHWM of the process and its children, in MiB (the children's are read while they run)."""
    total = 0.0
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for one in [str(pid), *children]:
        try:
            status = Path(f"/proc/{one}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def bundle_for_bench(work: Path) -> Path:
    from cxrxai.model.layout import DEFAULT_BUNDLE

    if (DEFAULT_BUNDLE / "configs" / "metadata.json").is_file():
        return DEFAULT_BUNDLE
    from cxrxai.model.bundle import make_untrained_bundle

    make_untrained_bundle(work / "bundle", input_size=128)
    return work / "bundle"


def receive_throughput(work: Path, images: Path, count: int, bundle: Path) -> tuple[float, float]:
    port = free_port()
    # +B: bit-preserving, storescp's fastest mode (it writes what it receives without re-encoding)
    with storescp(work / "storescp-out", port, "STORESCP", False, "+B"):
        send(images, port, "STORESCP")  # the first pass warms the page cache for both receivers
        shutil.rmtree(work / "storescp-out")
        (work / "storescp-out").mkdir()
        reference = send(images, port, "STORESCP")
    config = node_toml(work / "receive", bundle, free_port(), [], node={"study_quiet_seconds": 3600.0})
    node_port = load_config(config).node.port
    process = start_node(config)
    try:
        wait_for(lambda: echo_ok(node_port), 120, 0.5, "the node")
        ours = send(images, node_port, "CXRXAI")
    finally:
        stop(process)
    return count / reference, count / ours


def latencies(work: Path, bundle: Path, burst: int, workers: int) -> dict:
    pacs_port = free_port()
    root = work / "latency"
    config = node_toml(
        root,
        bundle,
        free_port(),
        [{"name": "pacs", "ae_title": "STORESCP", "host": "127.0.0.1", "port": pacs_port}],  # fmt: skip
        processing={"workers": workers},
        node={"study_quiet_seconds": 0.2},
    )
    node_port = load_config(config).node.port
    single, many = root / "single", root / "burst"
    for i in range(SEQUENTIAL + 1):  # the first one also waits for the worker's warm-up: not counted
        write_phantom_radiograph(single / str(i) / "image.dcm", seed=10_000 + i)
    many.mkdir(parents=True)
    for i in range(burst):
        write_phantom_radiograph(many / f"{i:03d}.dcm", seed=20_000 + i)
    result: dict = {}
    with storescp(root / "pacs", pacs_port):
        process = start_node(config)
        try:
            wait_for(lambda: echo_ok(node_port), 120, 0.5, "the node")
            database = root / "node.sqlite"
            for folder in sorted(single.iterdir()):  # one study at a time: the queue is always empty
                _send_and_wait(folder, node_port, database, 1)
            result["empty queue"] = _latency(database, single)[1:]
            _send_and_wait(many, node_port, database, burst)
            result[f"burst of {burst}"] = _latency(database, many)
            result["peak memory (MiB)"] = peak_memory_mb(process.pid)
        finally:
            stop(process)
    return result


def write_phantom_radiograph(path: Path, seed: int) -> None:
    """A 512-row phantom as a 12-bit CR: what the default model was trained for, so the number of
    findings above threshold (hence of heat-map objects) is typical rather than inflated."""
    from cxrxai.phantoms.generator import make_phantom
    from cxrxai.samples import radiograph_dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    phantom = make_phantom(seed, 0, rows=512)
    radiograph_dataset(phantom.image, bits=12).save_as(path, enforce_file_format=True)


def _send_and_wait(folder: Path, port: int, database: Path, count: int) -> None:
    before = _finished(database)
    send(folder, port, "CXRXAI")
    wait_for(lambda: _finished(database) >= before + count, 3600, 0.1, "processing")
    wait_for(lambda: not _unsent(database), 600, 0.1, "deliveries")


def _finished(database: Path) -> int:
    with sqlite3.connect(database) as db:
        return db.execute(
            "SELECT COUNT(*) FROM studies WHERE state IN ('done', 'failed', 'skipped')"
        ).fetchone()[0]


def _unsent(database: Path) -> int:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT COUNT(*) FROM deliveries WHERE state != 'sent'").fetchone()[0]


def _latency(database: Path, folder: Path) -> np.ndarray:
    from pydicom import dcmread

    studies = [
        str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in sorted(folder.rglob("*.dcm"))
    ]
    values = []
    with sqlite3.connect(database) as db:
        for study in studies:
            received = db.execute("SELECT MIN(received_at) FROM instances WHERE study_instance_uid = ?",
                                  (study,)).fetchone()[0]  # fmt: skip
            acknowledged = db.execute("SELECT MAX(sent_at) FROM deliveries WHERE study_instance_uid = ?",
                                      (study,)).fetchone()[0]  # fmt: skip
            values.append(acknowledged - received)
    return np.array(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1024, help="rows of the throughput images")
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--code", type=Path, default=ROOT,
        help="run the node from this checkout (e.g. a git worktree of the previous commit) with this "
        "benchmark and its peers: the reference for a same-run comparison",
    )  # fmt: skip
    args = parser.parse_args()
    global CODE
    CODE = args.code.resolve()
    work = Path(tempfile.mkdtemp(prefix="cxrxai-bench-node-"))
    try:
        bundle = bundle_for_bench(work)
        make_images(work / "images", args.images, args.rows)
        size = sum(p.stat().st_size for p in (work / "images").iterdir()) / args.images / 1e6
        theirs, ours = receive_throughput(work, work / "images", args.images, bundle)
        print(f"\nReceive throughput, {args.images} CR images of {size:.1f} MB, storescu -> SCP on loopback")
        print("| receiver | images/s | ratio to storescp |\n|---|---:|---:|")
        print(f"| DCMTK storescp `+B` (bit-preserving, no fsync) | {theirs:.1f} | 1.00 |")
        print(f"| cxrxai node (fsync + SQLite per instance) | {ours:.1f} | {ours / theirs:.2f} |")
        result = latencies(work, bundle, args.burst, args.workers)
        print(f"\nEnd-to-end latency (C-STORE received -> last result acknowledged), bundle {bundle.name}, "
              f"{args.workers} worker(s), node code {CODE}")  # fmt: skip
        print("| load | studies | p50 s | p95 s | max s |\n|---|---:|---:|---:|---:|")
        for name, values in result.items():
            if isinstance(values, np.ndarray):
                p50, p95 = np.percentile(values, [50, 95])
                print(f"| {name} | {len(values)} | {p50:.2f} | {p95:.2f} | {values.max():.2f} |")
        print(f"\nPeak resident memory, node + workers: {result['peak memory (MiB)']:.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
