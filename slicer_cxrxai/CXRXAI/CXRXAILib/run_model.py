"""The model run behind "Run locally", in a Python process of its own (Slicer's `PythonSlicer`): explains one
radiograph with a bundle and writes predictions.json and heatmaps.npz into a folder, printing one progress
line per stage for the module to show. Its own process keeps Slicer responsive and lets the user cancel.

Usage: PythonSlicer run_model.py RADIOGRAPH BUNDLE OUTPUT_FOLDER
Exit status 0 on success; otherwise the last line says what went wrong.
"""

from __future__ import annotations

import sys

PROGRESS = "CXRXAI-PROGRESS"  # the prefix of the lines the module reads: "CXRXAI-PROGRESS <percent> <stage>"


def report(percent: int, stage: str) -> None:
    print(f"{PROGRESS} {percent} {stage}", flush=True)


def main(arguments: list[str]) -> int:
    if len(arguments) != 3:
        print("usage: run_model.py RADIOGRAPH BUNDLE OUTPUT_FOLDER", flush=True)
        return 2
    radiograph_path, bundle, folder = arguments
    report(5, "loading PyTorch and the model")
    from cxrxai.errors import CXRXAIError
    from cxrxai.explain import DEFAULT_METHODS, Explainer
    from cxrxai.io import read_radiograph

    try:
        explainer = Explainer.from_bundle(bundle)
        report(30, "reading the radiograph")
        radiograph = read_radiograph(radiograph_path)
        report(40, f"explaining with {len(DEFAULT_METHODS)} methods")
        explanation = explainer.explain(radiograph, methods=DEFAULT_METHODS)
        report(90, "writing the results")
        explanation.save(folder)
    except (CXRXAIError, OSError, ValueError) as exc:
        print(f"the model could not explain {radiograph_path}: {exc}", flush=True)
        return 1
    report(100, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
