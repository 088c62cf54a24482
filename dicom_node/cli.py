"""`cxrxai serve` / `python -m dicom_node` and the outbox commands (`cxrxai node deliveries|resend`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dicom_node.config import ConfigError, load_config


def add_commands(commands) -> None:
    """Register `serve` and `node` on the cxrxai command parser."""
    serve = commands.add_parser("serve", help="run the DICOM node (receive, explain, send results back)")
    serve.add_argument("--config", type=Path, default=None, help="node.toml (default: built-in defaults)")
    serve.set_defaults(run=run_serve)
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


def _config(args: argparse.Namespace):
    try:
        return load_config(args.config)
    except ConfigError as exc:
        from cxrxai.errors import CXRXAIError

        raise CXRXAIError(f"configuration: {exc}") from None


def run_serve(args: argparse.Namespace) -> int:
    from dicom_node.service import serve

    return serve(_config(args))


def run_deliveries(args: argparse.Namespace) -> int:
    from dicom_node.store import Store

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
    from dicom_node.store import Store

    count = Store(_config(args).paths.database).resend(args.id)
    print(f"{count} deliveries queued again")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m dicom_node [--config node.toml]`: the same as `cxrxai serve`."""
    from cxrxai.cli import main as cxrxai_main

    return cxrxai_main(["serve", *(sys.argv[1:] if argv is None else argv)])
