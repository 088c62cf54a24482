"""`make demo`: the product's main job on loopback, end to end.

A demo PACS (a pynetdicom Storage SCP writing to `demo-out/pacs`) and the node start on free loopback
ports; the sample radiographs are C-STOREd to the node; the node explains them with the shipped
default bundle and sends SR, SEG, Secondary Capture pages and a presentation state back to the demo
PACS; the demo reads the findings back from the SR it received, saves the Secondary Capture pages
(the overlays) as PNG beside them, and stops the node cleanly. Without a shipped default bundle it
says so and uses an untrained one (the pipeline runs; the numbers mean nothing).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from pydicom import dcmread

from dicom_node.ports import free_port

OUT = Path("demo-out")
SAMPLES = Path(__file__).resolve().parent.parent / "resources" / "samples"
TIMEOUT_SECONDS = 300


def run(out: Path = OUT) -> int:
    from pynetdicom import AE, StoragePresentationContexts, evt

    from cxrxai.cli import DEFAULT_BUNDLE
    from cxrxai.dicom.results import result_file_name
    from cxrxai.samples import write_samples
    from dicom_node.config import Destination, NodeConfig, NodeSection, PathsSection, ProcessingSection
    from dicom_node.logs import configure_logging
    from dicom_node.service import Node

    configure_logging("WARNING")
    for folder in ("node", "pacs"):
        shutil.rmtree(out / folder, ignore_errors=True)
    inputs = sorted(SAMPLES.glob("*.dcm")) or write_samples(out / "inputs", count=2)
    bundle = DEFAULT_BUNDLE
    if not (bundle / "configs" / "metadata.json").is_file():
        from cxrxai.model.bundle import make_untrained_bundle

        bundle = out / "untrained-bundle"
        print("No default bundle is shipped; using an UNTRAINED bundle (meaningless predictions).")
        make_untrained_bundle(bundle)
    pacs_folder = out / "pacs"
    pacs_folder.mkdir(parents=True)

    def store(event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        dataset.save_as(pacs_folder / result_file_name(dataset), enforce_file_format=True)
        return 0x0000

    pacs = AE(ae_title="DEMOPACS")
    pacs.supported_contexts = StoragePresentationContexts
    pacs_server = pacs.start_server(
        ("127.0.0.1", free_port()), block=False, evt_handlers=[(evt.EVT_C_STORE, store)]
    )
    assert pacs_server is not None  # block=False always returns the running server
    config = NodeConfig(
        node=NodeSection(
            bind_address="127.0.0.1",
            port=free_port(),
            study_quiet_seconds=1.0,
            allowed_calling_ae_titles=("DEMOSCU",),
        ),
        paths=PathsSection(
            spool=out / "node" / "spool",
            database=out / "node" / "node.sqlite",
            results=out / "node" / "results",
            audit_log=out / "node" / "audit.log",
            index=out / "node" / "results.sqlite",
        ),
        processing=ProcessingSection(bundle=bundle),
        destinations=(Destination("pacs", "DEMOPACS", "127.0.0.1", int(pacs_server.server_address[1])),),
    )
    node = Node(config)
    print(f"Starting the node (AE CXRXAI on 127.0.0.1:{config.node.port}) with {bundle} ...")
    node.start()
    try:
        sender = AE(ae_title="DEMOSCU")
        for sop_class, syntax in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID))
                                         for d in map(dcmread, inputs)}):  # fmt: skip
            sender.add_requested_context(sop_class, syntax)
        assoc = sender.associate("127.0.0.1", node.port, ae_title="CXRXAI")
        if not assoc.is_established:
            print("demo: could not associate with the node", file=sys.stderr)
            return 1
        for path in inputs:
            status = assoc.send_c_store(dcmread(path))
            print(f"C-STORE {path.name} -> node: status 0x{int(status.Status):04X}")
        assoc.release()
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
        return _report(pacs_folder, config.paths.index)
    finally:
        node.stop()
        pacs_server.shutdown()


def _report(pacs_folder: Path, index: Path) -> int:
    import numpy as np
    from PIL import Image

    from cxrxai.cli import summary_table
    from cxrxai.dicom.sr import read_sr

    reports = sorted(pacs_folder.glob("SR-*.dcm"))
    if not reports:
        print("demo: no SR arrived at the demo PACS", file=sys.stderr)
        return 1
    for path in reports:
        found = read_sr(dcmread(path))
        print(f"== findings for source image {found.source_sop_instance_uid} ({found.algorithm_name} "
              f"{found.algorithm_version}), from the SR the PACS received:")  # fmt: skip
        print(summary_table(found), end="\n\n")  # the CLI's table, from what the SR says
    for path in sorted(pacs_folder.glob("OT-*.dcm")):  # Secondary Capture pages: the overlays
        Image.fromarray(np.asarray(dcmread(path).pixel_array)).save(path.with_suffix(".png"))
    kinds = sorted({p.name.split("-")[0] for p in pacs_folder.glob("*.dcm")})
    print(f"DICOM results at the demo PACS ({', '.join(kinds)}): {pacs_folder}/")
    print(f"Overlays (Secondary Capture pages, also as PNG): {pacs_folder}/OT-*.png")
    print(f"Results index the node wrote: cxrxai results query --index {index}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
