"""`cxrxai phantoms --count N --out DIR --seed S [--format dicom|png|both] [--size 512] [--workers W]`."""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from cxrxai.phantoms.generator import make_phantom
from cxrxai.phantoms.writer import write_phantom, write_set


def _one(index: int, seed: int, size: int, out: Path, formats: frozenset[str]) -> dict:
    return write_phantom(make_phantom(seed, index, rows=size), out, index, seed, set(formats))


def generate(count: int, out: Path, seed: int, formats: set[str], size: int = 512, workers: int = 1) -> int:
    """Write `count` phantoms; deterministic for (seed, index) whatever the number of workers."""
    out.mkdir(parents=True, exist_ok=True)
    task = partial(_one, seed=seed, size=size, out=out, formats=frozenset(formats))
    indices = range(count)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            records = list(_progress(pool.map(task, indices, chunksize=4), count))
    else:
        records = [task(i) for i in _progress(indices, count)]
    write_set(records, out)
    return len(records)


def _progress(items, total: int):
    if total < 10:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, unit="image", file=sys.stderr)
