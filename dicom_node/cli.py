"""The node's part of the `cxrxai` command: `serve` (also `python -m dicom_node`), `worker`, `batch`, the
outbox commands (`node deliveries|resend`) and `results ingest --pacs`. Registered through the
`cxrxai.commands` entry point (pyproject.toml), so the core's command line never imports the node."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cxrxai.cli import CommandLine, ingest_files, iso_date
from cxrxai.errors import CXRXAIError
from dicom_node.config import ConfigError, load_config


def add_commands(cli: CommandLine) -> None:
    """Register `serve`, `worker`, `batch` and `node`, and the PACS options of `results ingest`."""
    commands = cli.commands
    serve = commands.add_parser("serve", help="run the DICOM node (receive, explain, send results back)")
    serve.add_argument("--config", type=Path, default=None, help="node.toml (default: built-in defaults)")
    serve.set_defaults(run=run_serve)
    worker = commands.add_parser(
        "worker", help="a remote worker: explain the node's jobs from a Celery queue ([queue] in node.toml)"
    )
    worker.add_argument("--config", type=Path, required=True, help="node.toml (shared spool / results paths)")
    worker.add_argument("--name", default=None, help="worker name in logs (default: cxrxai-<pid>)")
    worker.add_argument(
        "--threads", type=_threads, default=None,
        help="CPU threads for the model (default: all cores; k workers on one machine: cores / k each)",
    )  # fmt: skip
    worker.set_defaults(run=run_worker)
    batch = commands.add_parser(
        "batch", help="explain a folder of radiographs with the node's workers (resumable, no deliveries)"
    )
    batch.add_argument("inputs", nargs="*", type=Path, metavar="PATH", help="DICOM files or folders")
    batch.add_argument("--config", type=Path, required=True, help="node.toml ([queue], shared paths)")
    batch.add_argument(
        "--pacs", default=None, help="also C-FIND / C-GET the CR and DX images of AE@host:port"
    )
    batch.add_argument("--study", default="", help="with --pacs: one Study Instance UID")
    batch.add_argument(
        "--from", dest="date_from", type=iso_date, default=None, help="with --pacs: study date"
    )
    batch.add_argument("--to", dest="date_to", type=iso_date, default=None, help="with --pacs: study date")
    batch.add_argument("--into", type=Path, default=Path("cxrxai-batch-retrieved"), help="retrieved files")
    batch.add_argument("--ae", default="CXRXAI", help="our calling AE title (the PACS must know it)")
    batch.add_argument("--state", type=Path, default=Path("cxrxai-batch.sqlite"), help="resumable state")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    batch.set_defaults(run=run_batch)
    node = commands.add_parser("node", help="inspect and repair the node's outbox")
    actions = node.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("deliveries", help="list deliveries not yet sent, and dead-lettered ones")
    listing.add_argument("--config", type=Path, default=None, help="node.toml")
    listing.add_argument("--all", action="store_true", help="include sent deliveries")
    listing.set_defaults(run=run_deliveries)
    resend = actions.add_parser("resend", help="queue dead-lettered deliveries again")
    resend.add_argument("--config", type=Path, default=None, help="node.toml")
    resend.add_argument(
        "--id", type=int, nargs="+", default=None, help="only these deliveries (also sent ones)"
    )
    resend.set_defaults(run=run_resend)
    _add_pacs_ingest(cli.parsers["results ingest"])


def _add_pacs_ingest(ingest: argparse.ArgumentParser) -> None:
    """`cxrxai results ingest --pacs AE@host:port`: C-FIND / C-GET our SRs, then index them."""
    ingest.add_argument("--pacs", default=None, help="also C-FIND / C-GET our SRs from AE@host:port")
    ingest.add_argument(
        "--into", type=Path, default=Path("cxrxai-pacs-results"), help="where retrieved files go"
    )
    ingest.add_argument("--ae", default="CXRXAI", help="our calling AE title (the PACS must know it)")
    ingest.add_argument(
        "--from", dest="date_from", type=iso_date, default=None, help="study date, YYYY-MM-DD"
    )
    ingest.add_argument("--to", dest="date_to", type=iso_date, default=None, help="study date, YYYY-MM-DD")
    ingest.add_argument("--heatmaps", action="store_true", help="also retrieve the SRs' SEG and SC objects")
    ingest.set_defaults(run=run_results_ingest)


def run_results_ingest(args: argparse.Namespace) -> int:
    from cxrxai.index import ResultsIndex
    from dicom_node.pacs import Peer, ingest_from_pacs

    if not args.inputs and args.pacs is None:
        raise CXRXAIError("give SR files or folders to ingest, or --pacs AE@host:port")
    index = ResultsIndex(args.index)
    if args.inputs:
        ingest_files(index, args.inputs)
    if args.pacs is None:
        return 0
    pacs = ingest_from_pacs(
        index, Peer.parse(args.pacs), args.into, args.ae, args.date_from, args.date_to, args.heatmaps
    )
    retrieval = pacs.retrieval
    for uid, why in retrieval.failed:
        print(f"not retrieved {uid}: {why}", file=sys.stderr)
    print(
        f"PACS {args.pacs}: {retrieval.found} SRs found, {retrieval.skipped} already indexed, "
        f"{retrieval.retrieved} objects retrieved, {pacs.ingest.added} added, "
        f"{pacs.ingest.attached} result files attached, {len(retrieval.failed)} failed"
    )
    return 1 if retrieval.failed else 0


def _config(args: argparse.Namespace):
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise CXRXAIError(f"configuration: {exc}") from None


def run_serve(args: argparse.Namespace) -> int:
    from dicom_node.service import serve

    return serve(_config(args))


def run_worker(args: argparse.Namespace) -> int:
    from dicom_node.queues import run_worker as start

    return start(_config(args), args.name, args.threads)


def _threads(text: str) -> int:
    """A `--threads` value: a whole number, 1 or more."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of threads (1 or more)")
    return int(text)


def run_batch(args: argparse.Namespace) -> int:
    from dicom_node.batch import run_batch as batch

    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        raise CXRXAIError(f"{missing[0]}: no such file or folder")
    if not args.inputs and args.pacs is None:
        raise CXRXAIError("give folders or files of radiographs, or --pacs AE@host:port")
    config = _config(args)
    inputs = list(args.inputs)
    if args.pacs is not None:
        from dicom_node.pacs import Peer, retrieve_radiographs

        retrieval = retrieve_radiographs(
            Peer.parse(args.pacs), args.into, args.ae, args.study, args.date_from, args.date_to
        )
        for uid, why in retrieval.failed:
            print(f"not retrieved {uid}: {why}", file=sys.stderr)
        print(f"PACS {args.pacs}: {retrieval.found} radiographs found, {retrieval.retrieved} retrieved")
        inputs += retrieval.files
    report = batch(config, inputs, args.state, progress=not args.no_progress)
    print(
        f"{report.studies} studies: {report.already_done} already done, {report.done} done, "
        f"{report.skipped} skipped, {report.failed} failed; {report.not_dicom} files not DICOM "
        f"(state: {args.state})"
    )
    return 1 if report.failed else 0


def run_deliveries(args: argparse.Namespace) -> int:
    from dicom_node.state import Store

    store = Store(_config(args).paths.database)
    states = ("pending", "dead", "sent") if args.all else ("pending", "dead")
    rows = store.deliveries(states)
    print(f"{'id':>6}  {'state':8} {'attempts':>8}  {'destination':16} {'study':40} last error")
    for d in rows:
        study = d.study_instance_uid[:40]
        print(
            f"{d.id:>6}  {d.state:8} {d.attempts:>8}  {d.destination[:16]:16} {study:40} {d.last_error or ''}"
        )
    print(f"{len(rows)} deliveries")
    return 0


def run_resend(args: argparse.Namespace) -> int:
    from dicom_node.state import Store

    count = Store(_config(args).paths.database).resend(args.id)
    print(f"{count} deliveries queued again")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m dicom_node [--config node.toml]`: the same as `cxrxai serve`."""
    from cxrxai.cli import main as cxrxai_main

    return cxrxai_main(["serve", *(sys.argv[1:] if argv is None else argv)])
