"""Query latency of the results index with 100,000 images (1.4 million findings), SQLite and PostgreSQL.

The index is generated (random probabilities, 5,000 patients, study dates over 2025-2026, two model
versions) straight into the tables through SQLAlchemy Core, after `ResultsIndex` created the schema by
its migrations, so both databases hold identical rows with the production indexes. Each query is
`ResultsIndex.query` as researchers call it (the DataFrame included), run once to warm caches, then
timed `--repeat` times; the table gives the median and PostgreSQL / SQLite. The PostgreSQL server is the
Debian package's, started for the run (`tests/postgres_server.py`, fsync off: reads only are timed).

    python bench/bench_index.py [--images 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from cxrxai.index import ResultsIndex  # noqa: E402
from cxrxai.index.schema import Finding, Image  # noqa: E402
from cxrxai.labels import FINDINGS  # noqa: E402
from tests.postgres_server import postgres  # noqa: E402

QUERIES = {
    "effusion > 0.8, 2026, model 1.2 (issue example)": {
        "finding": "Pleural Effusion", "min_probability": 0.8, "date_from": dt.date(2026, 1, 1),
        "date_to": dt.date(2026, 12, 31), "model_version": "1.2",
    },
    "one patient (all findings)": {"patient_id": "P00042"},
    "one study": {"study_instance_uid": "1.2.826.0.1.3680043.10.1.77777"},
    "top 100 pneumothorax by probability": {
        "finding": "Pneumothorax", "sort": "probability", "descending": True, "limit": 100,
    },
    "positives of one finding, one month": {
        "finding": "Cardiomegaly", "decision": True, "date_from": dt.date(2026, 3, 1),
        "date_to": dt.date(2026, 3, 31),
    },
    "one finding, all images (100k rows)": {"finding": "Edema"},
}  # fmt: skip


def fill(index: ResultsIndex, images: int, seed: int = 0) -> float:
    """Insert `images` generated images with 14 findings each; returns the seconds it took."""
    rng = np.random.default_rng(seed)
    start = dt.date(2025, 1, 1)
    days = rng.integers(0, 730, images)
    probabilities = rng.beta(0.6, 3.0, (images, len(FINDINGS)))
    now = dt.datetime(2026, 11, 23, 12, 0)
    began = time.perf_counter()
    with index.engine.begin() as connection:
        for first in range(0, images, 10_000):
            rows, findings = [], []
            for i in range(first, min(first + 10_000, images)):
                sr = f"1.2.826.0.1.3680043.10.3.{i}"
                rows.append({
                    "sr_sop_instance_uid": sr, "sop_instance_uid": f"1.2.826.0.1.3680043.10.2.{i}",
                    "series_instance_uid": f"1.2.826.0.1.3680043.10.4.{i}",
                    "study_instance_uid": f"1.2.826.0.1.3680043.10.1.{i}", "patient_id": f"P{i % 5000:05d}",
                    "study_date": start + dt.timedelta(days=int(days[i])),
                    "modality": "CR" if i % 3 else "DX", "view_position": "PA" if i % 4 else "AP",
                    "model_name": "cxrxai-unet",
                    "model_version": "1.2" if i % 2 else "1.1", "model_hash": "sha256:" + "ab" * 32,
                    "cardiothoracic_ratio": 0.4 + 0.2 * float(probabilities[i, 1]),
                    "processing_seconds": 2.0, "source": "generated", "ingested_at": now,
                })  # fmt: skip
                findings += [
                    {"sr_sop_instance_uid": sr, "name": name, "probability": float(p), "threshold": 0.5,
                     "present": bool(p >= 0.5)}
                    for name, p in zip(FINDINGS, probabilities[i], strict=True)
                ]  # fmt: skip
            connection.execute(insert(Image), rows)
            connection.execute(insert(Finding), findings)
    return time.perf_counter() - began


def timed(index: ResultsIndex, filters: dict, repeat: int) -> tuple[float, int]:
    rows = len(index.query(**filters))  # warm caches
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        index.query(**filters)
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, postgres() as url:
        sqlite = ResultsIndex(Path(folder) / "index.sqlite")
        server = ResultsIndex(url)
        loads = {"SQLite": fill(sqlite, args.images), "PostgreSQL": fill(server, args.images)}
        with server.engine.begin() as connection:  # fresh statistics, as autovacuum would have made
            connection.exec_driver_sql("ANALYZE")
        with sqlite.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        print(f"{args.images} images, {args.images * len(FINDINGS)} findings; load: "
              + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in loads.items()))  # fmt: skip
        print(f"median of {args.repeat} runs, ResultsIndex.query to a DataFrame\n")
        print("| query | rows | SQLite (ms) | PostgreSQL (ms) | PostgreSQL / SQLite |")
        print("|---|---:|---:|---:|---:|")
        for name, filters in QUERIES.items():
            ours, rows = timed(sqlite, filters, args.repeat)
            theirs, rows_pg = timed(server, filters, args.repeat)
            assert rows == rows_pg, (name, rows, rows_pg)  # the same answers
            print(f"| {name} | {rows} | {ours * 1000:.1f} | {theirs * 1000:.1f} | {theirs / ours:.2f} |")
        server.engine.dispose()


if __name__ == "__main__":
    main()
