"""`make demo` end to end (the shipped bundle, the node, a demo PACS): what a person sees on the console."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_console_shows_findings_and_no_library_info_logs(tmp_path):
    script = f"import sys, pathlib, dicom_node.demo as d; sys.exit(d.run(pathlib.Path({str(tmp_path)!r})))"
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    console = run.stdout + run.stderr
    assert run.returncode == 0, console[-3000:]
    assert "cardiothoracic ratio" in console and "DICOM results at the demo PACS (OT, PR, SEG, SR)" in console
    logged = [json.loads(line) for line in console.splitlines() if line.startswith("{")]
    assert [entry for entry in logged if entry["level"] in ("debug", "info")] == [], logged
