"""`make demo`: the product's main job on loopback, end to end, ending in a PACS a person can browse.

Orthanc (the Debian package, with DICOMweb) is the demo PACS, its archive in `demo-out/pacs`; the node
starts on a free loopback port. The sample radiographs are stored in Orthanc, which routes them to the
node as a department's PACS would (C-STORE); the node explains them with the shipped default bundle and
sends SR, SEG, Secondary Capture pages and a presentation state back to Orthanc. The demo reads the
findings back from the SRs Orthanc holds, saves the Secondary Capture pages (the overlays) as PNG in
`demo-out/pacs-files`, and stops the node and Orthanc cleanly. `make viewer` then serves OHIF over the
same archive. Without a shipped default bundle it says so and uses an untrained one (the pipeline runs;
the numbers mean nothing).
"""

from __future__ import annotations

import shutil
import sys
import time
from io import BytesIO
from pathlib import Path

from pydicom import dcmread

from dicom_node.orthanc import Orthanc
from dicom_node.ports import free_port

OUT = Path("demo-out")
SAMPLES = Path(__file__).resolve().parent.parent / "resources" / "samples"
TIMEOUT_SECONDS = 300
PACS_AE_TITLE = "DEMOPACS"


def run(out: Path = OUT) -> int:
    from cxrxai.model.layout import DEFAULT_BUNDLE, is_bundle
    from cxrxai.phantoms.samples import write_samples
    from dicom_node.config import Destination, NodeConfig, NodeSection, PathsSection, ProcessingSection
    from dicom_node.logs import configure_logging
    from dicom_node.service import Node

    configure_logging("WARNING")
    for folder in ("node", "pacs", "pacs-files"):
        shutil.rmtree(out / folder, ignore_errors=True)
    inputs = sorted(SAMPLES.glob("*.dcm")) or write_samples(out / "inputs", count=2)
    bundle = DEFAULT_BUNDLE
    if not is_bundle(bundle):
        from cxrxai.model.bundle import make_untrained_bundle

        bundle = out / "untrained-bundle"
        print("No default bundle is shipped; using an UNTRAINED bundle (meaningless predictions).")
        make_untrained_bundle(bundle)
    node_port = free_port()
    pacs = Orthanc(out / "pacs", PACS_AE_TITLE, {"cxrxai": ("CXRXAI", "127.0.0.1", node_port)})
    pacs.start()
    config = NodeConfig(
        node=NodeSection(
            bind_address="127.0.0.1",
            port=node_port,
            study_quiet_seconds=1.0,
            allowed_calling_ae_titles=(PACS_AE_TITLE,),
        ),
        paths=PathsSection(
            spool=out / "node" / "spool",
            database=out / "node" / "node.sqlite",
            results=out / "node" / "results",
            audit_log=out / "node" / "audit.log",
            index=out / "node" / "results.sqlite",
        ),
        processing=ProcessingSection(bundle=bundle),
        destinations=(Destination("pacs", PACS_AE_TITLE, "127.0.0.1", pacs.dicom_port),),
    )
    node = Node(config)
    print(f"Starting the node (AE CXRXAI on 127.0.0.1:{config.node.port}) with {bundle} ...")
    node.start()
    try:
        print(f"Demo PACS: Orthanc (AE {PACS_AE_TITLE}, DICOM 127.0.0.1:{pacs.dicom_port}, {pacs.url})")
        stored = [pacs.upload(path)["ID"] for path in inputs]
        pacs.rest("/modalities/cxrxai/store", data=_json(stored), method="POST")  # PACS -> node
        print(f"Orthanc sent {len(stored)} radiographs to the node (C-STORE).")
        expected = len(inputs)
        started = time.monotonic()
        while time.monotonic() - started < TIMEOUT_SECONDS:
            counts = node.store.counts()
            finished = sum(counts["studies"].get(s, 0) for s in ("done", "skipped", "failed"))
            if finished >= expected and not counts["deliveries"].get("pending"):
                break
            time.sleep(0.5)
        else:
            print("demo: the node did not finish in time", file=sys.stderr)
            return 1
        print(f"All results delivered in {time.monotonic() - started:.1f} s.\n")
        return _report(pacs, out / "pacs-files", config.paths.index)
    finally:
        node.stop()
        pacs.stop()


def _json(value) -> bytes:
    import json

    return json.dumps(value).encode()


def _report(pacs: Orthanc, files: Path, index: Path) -> int:
    """The findings from each SR the PACS holds, its pictures as PNG, and where to look next."""
    import numpy as np
    from PIL import Image

    from cxrxai.dicom.result_objects import result_file_name
    from cxrxai.dicom.sr import read_sr
    from cxrxai.explanation import summary_table

    files.mkdir(parents=True, exist_ok=True)
    for identifier in pacs.rest("/instances"):
        dataset = dcmread(BytesIO(pacs.rest_bytes(f"/instances/{identifier}/file")))
        dataset.save_as(files / result_file_name(dataset), enforce_file_format=True)
    reports = sorted(files.glob("SR-*.dcm"))
    if not reports:
        print("demo: no SR arrived at the demo PACS", file=sys.stderr)
        return 1
    for path in reports:
        found = read_sr(dcmread(path))
        print(f"== findings for source image {found.source_sop_instance_uid} ({found.algorithm_name} "
              f"{found.algorithm_version}), from the SR the PACS received:")  # fmt: skip
        print(summary_table(found), end="\n\n")  # the CLI's table, from what the SR says
    for path in sorted(files.glob("OT-*.dcm")):  # Secondary Capture pages: the overlays
        Image.fromarray(np.asarray(dcmread(path).pixel_array)).save(path.with_suffix(".png"))
    kinds = sorted({p.name.split("-")[0] for p in files.glob("*.dcm")} - {"CR", "DX"})
    print(f"DICOM results at the demo PACS ({', '.join(kinds)}): Orthanc's archive in {pacs.root}/, "
          f"copies in {files}/")  # fmt: skip
    print(f"Overlays (Secondary Capture pages, also as PNG): {files}/OT-*.png")
    print(f"Results index the node wrote: cxrxai results query --index {index}")
    print("See them in OHIF: make viewer")
    return 0


if __name__ == "__main__":
    sys.exit(run())
