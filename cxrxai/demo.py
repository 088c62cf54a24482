"""`make demo`: explain sample chest radiographs with the default bundle and show where the results are.

Until the trained default model ships (issue 4) there is no bundle under resources/bundles/default; the
demo then creates an UNTRAINED bundle and says so loudly: the pipeline runs end to end, the numbers mean
nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cxrxai.cli import DEFAULT_BUNDLE, main
from cxrxai.samples import write_samples

OUT = Path("demo-out")
SAMPLES = Path(__file__).resolve().parent.parent / "resources" / "samples"


def run() -> int:
    inputs = sorted(SAMPLES.glob("*.dcm")) or write_samples(OUT / "inputs", count=2)
    bundle = DEFAULT_BUNDLE
    if not (bundle / "configs" / "metadata.json").is_file():
        bundle = OUT / "untrained-bundle"
        print(
            "No trained default bundle is shipped yet; using an UNTRAINED bundle (meaningless predictions)."
        )
        from cxrxai.model.bundle import make_untrained_bundle

        make_untrained_bundle(bundle)
    code = 0
    for path in inputs:
        print(f"\n== {path}")
        code |= main(
            ["explain", str(path), "--out", str(OUT / "results"), "--bundle", str(bundle), "--format", "all"]
        )
    results = OUT / "results"
    print(f"\nOverlays: {', '.join(str(results / p.stem / 'overview.png') for p in inputs)}")
    print(f"DICOM results (SR, SEG, SC, GSPS): {', '.join(str(results / p.stem / 'dicom') for p in inputs)}")
    return code


if __name__ == "__main__":
    sys.exit(run())
