"""'Run locally': explain the loaded radiograph inside Slicer with cxrxai, e.g. to try another bundle.

Only this module imports torch, and only inside its functions: the module as a whole must load in a
Slicer without PyTorch. The widget asks before installing anything (`missing_packages`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

NEEDED = {"torch": "PyTorch", "monai": "MONAI", "captum": "Captum", "cxrxai": "cxrxai"}
PIP_REQUIREMENT = "cxrxai[model]"  # pulls MONAI and Captum; torch comes from Slicer's PyTorch extension


def missing_packages() -> list[str]:
    """Display names of what a local run still needs."""
    return [name for module, name in NEEDED.items() if importlib.util.find_spec(module) is None]


def default_bundle() -> Path | None:
    """The bundle shipped with a source checkout of cxrxai, if this installation has it."""
    from cxrxai.cli import DEFAULT_BUNDLE

    return DEFAULT_BUNDLE if (DEFAULT_BUNDLE / "configs" / "metadata.json").is_file() else None


def explain_file(path: str | Path, bundle: str | Path | None = None, methods: tuple[str, ...] | None = None):
    """Explain one radiograph file with every default method; RadiographResults, as from DICOM."""
    from cxrxai.explain import DEFAULT_METHODS, Explainer
    from cxrxai.io import read_radiograph
    from CXRXAILib.catalogue import from_explanation

    chosen = bundle or default_bundle()
    if chosen is None:
        raise FileNotFoundError("this cxrxai installation has no default bundle: choose a bundle folder")
    explainer = Explainer.from_bundle(chosen)
    explanation = explainer.explain(read_radiograph(path), methods=methods or DEFAULT_METHODS)
    return from_explanation(explanation)
