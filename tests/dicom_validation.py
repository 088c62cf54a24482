"""dciodvfy as a test oracle: the errors it reports for an object, minus those it reports for its source."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

needs_dciodvfy = pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dicom3tools missing: `make test` installs it"
)


def dciodvfy_errors(path: str | Path) -> list[str]:
    """The 'Error' lines dciodvfy prints for a file (warnings are returned by dciodvfy_warnings)."""
    completed = subprocess.run(  # names in other character sets are printed as their raw bytes
        ["dciodvfy", str(path)], capture_output=True, text=True, errors="replace", timeout=60
    )
    lines = (completed.stdout + completed.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def new_errors(result: str | Path, source: str | Path) -> list[str]:
    """Errors in `result` that dciodvfy does not already report for `source` (copied modules carry those)."""
    inherited = set(dciodvfy_errors(source))
    return [line for line in dciodvfy_errors(result) if line not in inherited]
