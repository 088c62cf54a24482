"""`make demo` end to end (the shipped bundle, the node, Orthanc as the demo PACS): what a person sees on
the console, and that `make viewer` finds the demo's studies in the archive it left."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from dicom_node.orthanc import DICOMWEB_PLUGIN, Orthanc
from dicom_node.viewer import ViewerServer, main, study_links

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not DICOMWEB_PLUGIN.exists(), reason="`make demo` installs orthanc-dicomweb")


def test_demo_ends_in_a_pacs_the_viewer_serves(tmp_path):
    script = f"import sys, pathlib, dicom_node.demo as d; sys.exit(d.run(pathlib.Path({str(tmp_path)!r})))"
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    console = run.stdout + run.stderr
    assert run.returncode == 0, console[-3000:]
    assert "cardiothoracic ratio" in console and "DICOM results at the demo PACS (OT, PR, SEG, SR)" in console
    assert "Orthanc sent 2 radiographs to the node (C-STORE)" in console
    logged = [json.loads(line) for line in console.splitlines() if line.startswith("{")]
    assert [entry for entry in logged if entry["level"] in ("debug", "info")] == [], logged
    # `make viewer`: the archive the demo left, served again, each study with its OHIF address
    with Orthanc(tmp_path / "pacs", "DEMOPACS") as pacs:
        server = ViewerServer(tmp_path, pacs.http_port).start()  # OHIF's files are not needed here
        try:
            links = study_links(pacs, server)
            address = f"{server.url}/viewer?StudyInstanceUIDs="
            assert len(links) == 2 and all(address in line for line in links)
            study = links[0].rsplit("=", 1)[1]
            with urllib.request.urlopen(f"{server.url}/dicom-web/studies/{study}/series") as answer:
                modalities = {s["00080060"]["Value"][0] for s in json.loads(answer.read())}
            assert modalities >= {"SR", "SEG", "OT", "PR"}  # the results, through the viewer's origin
        finally:
            server.stop()


def test_viewer_without_a_demo_archive_says_what_to_do(tmp_path, capsys):
    assert main(["--archive", str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"viewer: no Orthanc archive in {tmp_path / 'nothing'}: run `make demo` first"
    ]
