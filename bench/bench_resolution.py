"""The price of resolution: explanation time at 128, 256 and 512 px input, to plan a larger model.

A network of the shipped default model's shape (its bundle's `cxrxai.network`), untrained (the time does
not depend on the weights), explains the real PA radiograph at each input size: the default method set
for all 14 findings, and every method (LIME and occlusion included) for one finding, whose time is also
given times 14 (an estimate, said as such: all methods for 14 findings at 512 px would take the better
part of an hour on 2 cores). Ratios are against 128 px, the shipped model's input, in the same run.

Usage: python bench/bench_resolution.py [--sizes 128 256 512] [--device cpu] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cxrxai.explain import DEFAULT_METHODS, METHODS  # noqa: E402
from cxrxai.explain.engine import Explainer  # noqa: E402
from cxrxai.io import read_radiograph  # noqa: E402
from cxrxai.model.bundle import make_untrained_bundle  # noqa: E402
from cxrxai.model.layout import DEFAULT_BUNDLE  # noqa: E402
from cxrxai.model.network import NetworkConfig  # noqa: E402

REAL = ROOT / "resources" / "real" / "pa-chest-wg04-rg1.dcm"
ONE_FINDING = ["Pleural Effusion"]


def best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    metadata = json.loads((DEFAULT_BUNDLE / "configs" / "metadata.json").read_text())
    network = NetworkConfig.from_dict(metadata["cxrxai"]["network"])
    radiograph = read_radiograph(REAL)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            bundle = Path(tmp) / str(size)
            make_untrained_bundle(bundle, network, input_size=size, seed=0)
            explainer = Explainer.from_bundle(bundle, device=args.device)
            explainer.explain(radiograph, methods=["gradcam"])  # warm-up: lazy imports, first allocations
            default = best_of(
                lambda e=explainer: e.explain(radiograph, methods=DEFAULT_METHODS), args.repeats
            )
            every = best_of(
                lambda e=explainer: e.explain(radiograph, findings=ONE_FINDING, methods=METHODS), 1
            )
            rows.append((size, default, every))
    base_default, base_every = rows[0][1], rows[0][2]
    print(f"network {network.channels} (the default model's shape), device {args.device}")
    print("| input | default methods, 14 findings (s) | x 128 px | all methods, 1 finding (s) | x 128 px | "
          "all methods, 14 findings (estimate, s) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for size, default, every in rows:
        print(f"| {size} | {default:.2f} | {default / base_default:.1f} | {every:.2f} | "
              f"{every / base_every:.1f} | {every * 14:.0f} |")  # fmt: skip
    print(f"\ndefault methods: {', '.join(DEFAULT_METHODS)}; all: {', '.join(METHODS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
