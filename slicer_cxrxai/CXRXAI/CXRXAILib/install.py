"""Python packages the module installs only on request (the model packages for "Run locally"), through
Slicer's own installer, `slicer.packaging` (Slicer 5.12)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path


def importable(modules: Sequence[str]) -> bool:
    importlib.invalidate_caches()
    return all(importlib.util.find_spec(module) is not None for module in modules)


def ensure_packages(
    packaging, requirements: str | Path, modules: Sequence[str], requester: str = "CXRXAI"
) -> bool:
    """True when `modules` can be imported, after installing the requirements file's packages if the user
    agrees. `packaging` is slicer.packaging: its pip_ensure asks and installs, returns None whether it
    installed or not (in Slicer's testing mode it skips), and raises RuntimeError when the user declines;
    so success is judged by importing afterwards, never by what it returns."""
    if importable(modules):
        return True
    try:
        packaging.pip_ensure(packaging.load_requirements(str(requirements)), requester=requester)
    except RuntimeError:  # declined
        return False
    return importable(modules)
