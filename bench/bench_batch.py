"""`cxrxai batch` over a folder of radiographs: images per second with one and two workers.

Three runs over the same N phantom CRs (512 x 480, 12-bit; the default model's domain), each into a fresh
node folder with the shipped default bundle and the node's default processing (Grad-CAM only):
1. no queue: the batch command explains the images in its own process (one worker);
2. Celery with Redis on loopback and one `cxrxai worker` process;
3. the same with two `cxrxai worker` processes.
Each run is the batch command's wall clock, start-up included; for the Celery runs the workers are
started and warm before it (as they are in a department), so their start-up is not in it, and share
the machine's cores (`cxrxai worker --threads`, cores / workers each). The ratios
are against run 1 in the same run of this script.

With `--device cuda` the model runs on the GPU (bench/gpu.sh); `--no-queue` keeps run 1 alone, for a
machine without Redis.

`--code CHECKOUT` runs the command and the workers from another checkout (a git worktree of the previous
commit), for a same-run comparison.

Usage: python bench/bench_batch.py [--images 200] [--device cpu] [--queue | --no-queue] [--code CHECKOUT]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cxrxai.model.layout import DEFAULT_BUNDLE  # noqa: E402
from cxrxai.samples import chest_image, radiograph_dataset  # noqa: E402
from tests.node_peers import free_port, node_toml, redis_server, wait_for  # noqa: E402


def make_archive(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        dataset = radiograph_dataset(chest_image(512, 480, seed=1000 + i), bits=12)
        dataset.save_as(folder / f"{i:04d}.dcm", enforce_file_format=True)


def code_environment(code: Path) -> dict[str, str]:
    """The environment of the batch command and its workers: `code` first on their import path."""
    return {**os.environ, "PYTHONPATH": str(code)}


def run_batch(config: Path, archive: Path, state: Path, code: Path) -> float:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "cxrxai.cli", "batch", str(archive), "--config", str(config),
         "--state", str(state), "--no-progress"],
        capture_output=True, text=True, env=code_environment(code),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if completed.returncode != 0 or " 0 failed" not in completed.stdout:
        raise SystemExit(f"batch failed: {completed.stdout}{completed.stderr}")
    return seconds


def with_workers(work: Path, archive: Path, count: int, device: str, code: Path) -> float:
    with redis_server(work / "redis") as broker:
        config = node_toml(work / "node", DEFAULT_BUNDLE, free_port(), [], processing={"device": device},
                           queue={"backend": "celery", "broker_url": broker})  # fmt: skip
        logs = [work / f"worker-{i}.log" for i in range(count)]
        threads = max(1, (os.cpu_count() or 1) // count)  # the machine's cores shared between its workers
        with contextlib.ExitStack() as files:
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "cxrxai.cli", "worker", "--config", str(config),
                     "--name", f"w{i}", "--threads", str(threads)],
                    stdout=files.enter_context(open(log, "ab")), stderr=subprocess.STDOUT,
                    start_new_session=True, env=code_environment(code),
                )  # fmt: skip
                for i, log in enumerate(logs)
            ]
        try:
            try:
                wait_for(lambda: all(" ready." in log.read_text(errors="replace") for log in logs), 180, 0.5,
                         "the workers starting")  # fmt: skip
            except AssertionError:
                for log, worker in zip(logs, workers, strict=True):  # the temporary folder goes with the run
                    tail = log.read_text(errors="replace")[-3000:]
                    print(f"--- {log.name} (exit {worker.poll()}):\n{tail}", file=sys.stderr)
                raise
            return run_batch(config, archive, work / "state.sqlite", code)
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: where the model runs")
    parser.add_argument("--queue", action=argparse.BooleanOptionalAction, default=True,
                        help="also the Celery runs with 1 and 2 workers (needs redis-server)")  # fmt: skip
    parser.add_argument(
        "--code", type=Path, default=ROOT,
        help="run the batch command and workers from this checkout (e.g. a git worktree of the previous "
        "commit): the reference for a same-run comparison",
    )  # fmt: skip
    args = parser.parse_args()
    code = args.code.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = work / "archive"
        make_archive(archive, args.images)
        local = node_toml(work / "local", DEFAULT_BUNDLE, free_port(), [], processing={"device": args.device})
        runs = [
            ("no queue: the batch process explains (1 worker)",
             run_batch(local, archive, work / "local-state.sqlite", code)),
        ]  # fmt: skip
        if args.queue:
            runs += [
                ("Celery + Redis, 1 `cxrxai worker`, all cores",
                 with_workers(work / "one", archive, 1, args.device, code)),
                ("Celery + Redis, 2 `cxrxai worker`s, cores / 2 each",
                 with_workers(work / "two", archive, 2, args.device, code)),
            ]  # fmt: skip
    reference = args.images / runs[0][1]
    print(f"`cxrxai batch` over {args.images} CR phantoms (512 x 480), default bundle, Grad-CAM, "
          f"model on {args.device}, code from {code}")  # fmt: skip
    print("| run | seconds | images/s | ratio to run 1 |")
    print("|---|---:|---:|---:|")
    for name, seconds in runs:
        rate = args.images / seconds
        print(f"| {name} | {seconds:.1f} | {rate:.2f} | {rate / reference:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
