"""Scale-out throughput: one burst of single-image studies through the node, explained by the embedded
queue (one local worker: the reference, same run) and by the Celery queue with 1 and with 2 remote
`cxrxai worker` processes on this machine (Redis broker, the Debian package's, on loopback).

Throughput = studies / (first C-STORE to the last result acknowledged by the destination, a DCMTK
storescp). The studies are 512-row phantoms (the default model's domain) and the model is the shipped
default bundle. On a 2-core machine two workers share the same cores, so this measures the queue's
overhead and that nothing serialises, not GPU scaling (docs/scale-out.md has that on paper).

Usage: python bench/bench_scale.py [--burst 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_node import (  # noqa: E402
    _finished,
    _unsent,
    bundle_for_bench,
    echo_ok,
    send,
    start_node,
    stop,
    write_phantom_radiograph,
)
from dicom_node.config import load_config  # noqa: E402
from tests.node_peers import free_port, node_toml, redis_server, storescp, wait_for  # noqa: E402


def run(work: Path, bundle: Path, studies: Path, count: int, workers: int, broker: str | None) -> float:
    """Seconds from sending the burst to the last delivery; `broker` None: the embedded queue."""
    pacs_port = free_port()
    queue = {"backend": "celery", "broker_url": broker} if broker else {}
    config_path = node_toml(
        work,
        bundle,
        free_port(),
        [{"name": "pacs", "ae_title": "STORESCP", "host": "127.0.0.1", "port": pacs_port}],
        processing={"workers": 1},
        node={"study_quiet_seconds": 0.2},
        queue=queue,
    )
    port = load_config(config_path).node.port
    remote = []
    with storescp(work / "pacs", pacs_port, verbose=False):
        node = start_node(config_path)
        try:
            wait_for(lambda: echo_ok(port), 120, 0.5, "the node")
            for i in range(workers if broker else 0):
                with open(work / f"worker{i}.log", "ab") as log:  # the child keeps its own descriptor
                    remote.append(subprocess.Popen(
                        [sys.executable, "-m", "cxrxai.cli", "worker", "--config", str(config_path)],
                        start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
                    ))  # fmt: skip
                wait_for(lambda i=i: "ready" in (work / f"worker{i}.log").read_text(errors="replace"), 120)
            database = work / "node.sqlite"
            send(studies / "warm-up", port, "CXRXAI")  # not timed: every worker has loaded its model
            wait_for(
                lambda: _finished(database) >= 1 and not _unsent(database), 600, 0.1, "the warm-up study"
            )
            started = time.perf_counter()
            send(studies / "burst", port, "CXRXAI")
            wait_for(lambda: _finished(database) >= 1 + count, 3600, 0.1, "processing")
            wait_for(lambda: not _unsent(database), 600, 0.1, "deliveries")
            return time.perf_counter() - started
        finally:
            for process in remote:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(120)
            stop(node)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxrxai-bench-scale-") as folder:
        work = Path(folder)
        bundle = bundle_for_bench(work)
        studies = work / "studies"
        write_phantom_radiograph(studies / "warm-up" / "image.dcm", seed=29_999)
        for i in range(args.burst):
            write_phantom_radiograph(studies / "burst" / f"{i:03d}.dcm", seed=30_000 + i)
        results = {
            "embedded queue, 1 local worker": run(work / "embedded", bundle, studies, args.burst, 1, None)
        }
        with redis_server(work / "redis") as broker:
            for workers in (1, 2):
                name = f"celery + Redis, {workers} remote worker(s)"
                results[name] = run(work / f"celery{workers}", bundle, studies, args.burst, workers, broker)
        reference = args.burst / results["embedded queue, 1 local worker"]
        print(f"burst of {args.burst} single-image studies, {os.cpu_count()} CPU cores\n")
        print("| queue | seconds | studies / s | vs embedded |")
        print("|---|---:|---:|---:|")
        for name, seconds in results.items():
            rate = args.burst / seconds
            print(f"| {name} | {seconds:.1f} | {rate:.2f} | {rate / reference:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
