"""`cxrxai` command line. Every failure is one readable line on stderr and a non-zero exit; a bad input
does not stop the other inputs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from cxrxai import __version__
from cxrxai.dicom.encoding import DEFAULT_TRANSFER_SYNTAX, TRANSFER_SYNTAXES
from cxrxai.errors import CXRXAIError
from cxrxai.model.layout import DEFAULT_BUNDLE, is_bundle
from cxrxai.train import FINDING_MAPS

INPUT_SUFFIXES = {".dcm", ".dicom", ".png", ".jpg", ".jpeg", ""}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except CXRXAIError as exc:
        print(f"cxrxai: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cxrxai: interrupted", file=sys.stderr)
        return 130


@dataclass
class CommandLine:
    """The `cxrxai` parser while it is composed: its subcommands, and the parsers other packages extend
    by name ("results ingest"). Packages above the core (the DICOM node) add commands through the
    `cxrxai.commands` entry points, so the core never imports them."""

    parser: argparse.ArgumentParser
    commands: argparse._SubParsersAction
    parsers: dict[str, argparse.ArgumentParser] = field(default_factory=dict)


COMMAND_ENTRY_POINTS = "cxrxai.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrxai", description="Explainable chest X-ray AI.")
    parser.add_argument("--version", action="version", version=f"cxrxai {__version__}")
    cli = CommandLine(parser, parser.add_subparsers(dest="command", required=True))
    add_core_commands(cli)
    for entry_point in sorted(entry_points(group=COMMAND_ENTRY_POINTS), key=lambda e: e.name):
        entry_point.load()(cli)
    return parser


def add_core_commands(cli: CommandLine) -> None:
    """explain, phantoms, train, evaluate, bundle and results: everything that needs no network."""
    from cxrxai.explain import DEFAULT_METHODS, EVALUATED_METHODS, METHODS

    commands = cli.commands
    opt_in = ", ".join(m for m in METHODS if m not in DEFAULT_METHODS)

    explain = commands.add_parser(
        "explain", help="predict and explain radiographs (DICOM, PNG, JPEG, NRRD, NIfTI, MetaImage, TIFF)"
    )
    explain.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="files or folders")
    explain.add_argument("--out", required=True, type=Path, help="output folder; one sub-folder per input")
    model = explain.add_argument_group("model")
    model.add_argument(
        "--bundle", type=Path, default=None, help=f"MONAI bundle folder (default: {DEFAULT_BUNDLE})"
    )
    model.add_argument(
        "--bundle-hash", default=None, help="refuse the bundle unless its content hash is this"
    )
    model.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    what = explain.add_argument_group("what to explain")
    what.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        metavar="METHOD",
        help=f"any of {', '.join(METHODS)} (default: all but {opt_in})",
    )
    what.add_argument("--findings", nargs="+", default=None, metavar="FINDING", help="default: all 14")
    what.add_argument("--lung-mask", action="store_true", help="also write lung-masked twins of every map")
    what.add_argument(
        "--smoothgrad-samples", type=int, default=None, metavar="N", help="noisy copies (default 8)"
    )
    explain.add_argument(
        "--format",
        choices=("files", "dicom", "all"),
        default="files",
        help="files: predictions.json, heatmaps.npz, overview.png; dicom: DICOM results in <stem>/dicom/",
    )
    explain.add_argument(
        "--dicom-heatmaps",
        default="above-threshold",
        metavar="WHICH",
        help="findings with heatmap segments and pages: above-threshold (default), top-K (e.g. top-3), all",
    )
    explain.add_argument(
        "--dicom-layer-maps",
        action="store_true",
        help="also write every layer's map as a FRACTIONAL SEG (for Slicer; OHIF does not draw it)",
    )
    explain.add_argument(
        "--transfer-syntax",
        choices=tuple(TRANSFER_SYNTAXES),
        default=DEFAULT_TRANSFER_SYNTAX,
        help=f"of SEG and Secondary Capture objects (default {DEFAULT_TRANSFER_SYNTAX}: any PACS serves it)",
    )
    explain.set_defaults(run=run_explain)

    phantoms = commands.add_parser("phantoms", help="synthetic chest radiographs with ground-truth masks")
    phantoms.add_argument("--count", type=int, required=True)
    phantoms.add_argument("--out", type=Path, required=True)
    phantoms.add_argument("--seed", type=int, default=0)
    phantoms.add_argument("--format", choices=("dicom", "png", "both"), default="png")
    phantoms.add_argument("--size", type=int, default=512, help="image rows (columns vary with the aspect)")
    phantoms.add_argument("--workers", type=int, default=2)
    phantoms.set_defaults(run=run_phantoms)

    training = commands.add_parser("train", help="train the two-head U-Net and write a MONAI bundle")
    training.add_argument("--data", type=Path, required=True, help="data folder in the chosen layout")
    training.add_argument("--layout", choices=("chexpert", "mimic"), default="chexpert")
    training.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    training.add_argument("--epochs", type=int, default=10)
    training.add_argument("--batch-size", type=int, default=16)
    training.add_argument("--learning-rate", type=float, default=2e-3)
    training.add_argument("--input-size", type=int, default=256)
    training.add_argument("--channels", type=int, nargs="+", default=None, help="U-Net channels per level")
    training.add_argument(
        "--strides",
        type=int,
        nargs="+",
        default=None,
        help="down-sampling per level but the last (default 2 each); 1 first keeps a full-resolution level",
    )
    training.add_argument(
        "--max-pool",
        action="store_true",
        help="the findings head also reads the global max of the last decoder features (small findings)",
    )
    training.add_argument(
        "--finding-mask-weight",
        type=float,
        default=0.0,
        help="> 0: also learn where each finding is, from masks/<key>/<finding>.png where present",
    )
    training.add_argument(
        "--finding-mask-map",
        choices=list(FINDING_MAPS),
        default="head",
        help="the map the finding masks supervise: " + ", or ".join(FINDING_MAPS.values()),
    )
    training.add_argument(
        "--finding-pointing-weight",
        type=float,
        default=0.0,
        help="> 0 (with --finding-mask-weight): also punish a finding map whose peak lies outside the mask",
    )
    training.add_argument(
        "--finding-pointing-skip",
        nargs="+",
        default=[],
        metavar="FINDING",
        help="findings whose maps the pointing term leaves out (e.g. Fracture)",
    )
    training.add_argument("--uncertain", choices=("ignore", "ones", "zeros"), default="ones")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--device", default="cpu")
    training.add_argument("--workers", type=int, default=0, help="data-loading processes")
    training.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    training.add_argument(
        "--compile", action="store_true", help="torch.compile the network: faster steps, needs g++ on CPU"
    )
    training.add_argument(
        "--no-cache", action="store_true", help="decode images every epoch instead of keeping them in memory"
    )
    training.add_argument("--name", default="cxrxai_unet")
    training.set_defaults(run=run_train)

    evaluation = commands.add_parser("evaluate", help="classification, anatomy and localisation metrics")
    evaluation.add_argument("--data", type=Path, required=True)
    evaluation.add_argument("--bundle", type=Path, required=True)
    evaluation.add_argument("--out", type=Path, required=True, help="report folder (report.md, report.json)")
    evaluation.add_argument(
        "--layout",
        choices=("chexpert", "mimic", "chexlocalize"),
        default="chexpert",
        help="phantom sets are recognised by their ground_truth.json; chexlocalize: real radiographs with "
        "a gt_segmentations_<split>.json of pixel masks",
    )
    evaluation.add_argument("--methods", nargs="+", default=list(EVALUATED_METHODS))
    evaluation.add_argument(
        "--faithfulness",
        action="store_true",
        help="also deletion / insertion AUC (22 forward passes per map)",
    )
    evaluation.set_defaults(run=run_evaluate)

    bundle = commands.add_parser("bundle", help="model bundle tools")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True)
    untrained = bundle_commands.add_parser(
        "create-untrained",
        help="write a randomly initialised bundle (pipeline checks only; meaningless predictions)",
    )
    untrained.add_argument("--out", required=True, type=Path)
    untrained.add_argument("--input-size", type=int, default=256)
    untrained.add_argument("--seed", type=int, default=0)
    untrained.set_defaults(run=run_create_untrained)
    verify = bundle_commands.add_parser("verify", help="check a bundle's content hash and print it")
    verify.add_argument("bundle", type=Path)
    verify.add_argument("--hash", default=None, help="also require this content hash")
    verify.set_defaults(run=run_verify)
    anatomy = bundle_commands.add_parser(
        "check-anatomy",
        help="is the bundle's lung / heart segmentation anatomically plausible on these PA radiographs? "
        "(exit status 1 if not)",
    )
    anatomy.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="files or folders")
    anatomy.add_argument("--bundle", type=Path, default=None, help=f"default: {DEFAULT_BUNDLE}")
    anatomy.add_argument("--device", default="cpu")
    anatomy.add_argument("--figures", type=Path, default=None, help="write <stem>-anatomy.png overlays here")
    anatomy.add_argument("--json", type=Path, default=None, help="also write every check to this file")
    anatomy.add_argument(
        "--reframings",
        type=int,
        default=0,
        metavar="N",
        help="also run the checks on N re-framed copies of each radiograph (turned, moved, cropped, "
        "re-windowed) and report how often each passes",
    )
    anatomy.set_defaults(run=run_check_anatomy)
    results = commands.add_parser("results", help="the results index: ingest SR results, query them")
    actions = results.add_subparsers(dest="action", required=True)
    ingest = actions.add_parser(
        "ingest", help="index our SR results (idempotent)"
    )
    ingest.add_argument("inputs", nargs="*", type=Path, metavar="PATH")
    ingest.add_argument("--index", default="cxrxai-results.sqlite", help="SQLite file or database URL")
    ingest.set_defaults(run=run_results_ingest)
    query = actions.add_parser("query", help="findings by filter, as a table, CSV or JSON")
    _add_filters(query)
    query.add_argument("--sort", default=None, help="a column, e.g. probability (default study_date)")
    query.add_argument("--descending", action="store_true")
    query.add_argument("--limit", type=int, default=None)
    query.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    query.add_argument(
        "--columns", nargs="+", default=None, metavar="COLUMN",
        help="the table's columns (default: a terminal-width summary with shortened UIDs)",
    )  # fmt: skip
    query.add_argument("--wide", action="store_true", help="the table with every column, UIDs in full")
    query.add_argument("--out", type=Path, default=None, help="write to this file (required for parquet)")
    query.set_defaults(run=run_results_query)
    stats = actions.add_parser("stats", help="per-finding prevalence, score distributions, trend by month")
    stats.add_argument("--index", default="cxrxai-results.sqlite", help="SQLite file or database URL")
    stats.add_argument("--model-version", default=None)
    stats.add_argument("--from", dest="date_from", type=iso_date, default=None, help="study date, YYYY-MM-DD")
    stats.add_argument("--to", dest="date_to", type=iso_date, default=None, help="study date, YYYY-MM-DD")
    stats.add_argument("--plots", type=Path, default=None, help="also write PNG plots to this folder")
    stats.add_argument("--format", choices=("table", "csv", "json"), default="table")
    stats.set_defaults(run=run_results_stats)
    export = actions.add_parser("export", help="a de-identified cohort: findings table and DICOM results")
    _add_filters(export)
    export.add_argument("--out", type=Path, required=True, help="a new folder")
    export.add_argument("--heatmaps", action="store_true", help="include the heatmap SEG and SC objects")
    export.add_argument(
        "--key-file", type=Path, default=None,
        help="a file holding the pseudonymisation key: the same key gives the same pseudonyms and date "
        "shifts in every export (default: a random key, consistent within this export only)",
    )  # fmt: skip
    export.set_defaults(run=run_results_export)
    cli.parsers["results ingest"] = ingest


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files as given; folders recursively, keeping DICOM / PNG / JPEG / research-format files, sorted."""
    from cxrxai.io.research_formats import is_research_format

    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and (p.suffix.lower() in INPUT_SUFFIXES or is_research_format(p))
                )
            )
        else:
            found.append(path)
    return found


def run_explain(args: argparse.Namespace) -> int:
    from cxrxai.dicom.result_objects import HeatmapSelection
    from cxrxai.explain import Explainer
    from cxrxai.explain.engine import ExplainerSettings
    from cxrxai.explain.registry import check_methods
    from cxrxai.explanation import summary_table
    from cxrxai.labels import resolve_findings

    try:
        findings = resolve_findings(args.findings)
        methods = check_methods(args.methods)
        selection = HeatmapSelection(args.dicom_heatmaps)
    except ValueError as exc:
        raise CXRXAIError(str(exc)) from None
    bundle = args.bundle or DEFAULT_BUNDLE
    if args.bundle is None and not is_bundle(DEFAULT_BUNDLE):
        raise CXRXAIError(
            f"no default bundle at {DEFAULT_BUNDLE} (a source checkout has it; `make model` re-creates it); "
            "pass --bundle"
        )
    settings = ExplainerSettings()
    if args.smoothgrad_samples is not None:
        if args.smoothgrad_samples < 1:
            raise CXRXAIError("--smoothgrad-samples must be at least 1")
        settings.smoothgrad_samples = args.smoothgrad_samples
    explainer = Explainer.from_bundle(bundle, args.bundle_hash, args.device, settings)
    if not explainer.bundle.spec.trained:
        print(
            f"cxrxai: warning: bundle {explainer.bundle.spec.name} is UNTRAINED; predictions are meaningless",
            file=sys.stderr,
        )
    inputs = expand_inputs(args.inputs)
    if not inputs:
        raise CXRXAIError("no input files found")
    failures = 0
    stems: dict[str, int] = {}
    progress = _progress(inputs)
    for path in progress:
        try:
            folder, explanation = _explain_one(
                path, args, explainer, findings, methods, selection, stems, progress
            )
        except CXRXAIError as exc:
            failures += 1
            _report(progress, f"cxrxai: {exc}")
            continue
        except Exception as exc:  # a defect of ours on this input: one line, and the other inputs go on
            failures += 1
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            _report(progress, f"cxrxai: {path}: internal error ({error}); please report it")
            continue
        if len(inputs) == 1:
            print(summary_table(explanation))
            print(f"results in {folder}")
    if failures:
        print(f"cxrxai: {failures} of {len(inputs)} inputs failed", file=sys.stderr)
        return 1
    return 0


def _explain_one(path, args, explainer, findings, methods, selection, stems, progress):
    """Explain one input and write what --format asks for; return its output folder and explanation.
    A source the DICOM results could not reference is refused before the model runs."""
    from cxrxai.dicom.common import check_reference_uids
    from cxrxai.dicom.result_objects import build_dicom_results, save_dicom_results
    from cxrxai.io import read_radiograph
    from cxrxai.render import write_overview

    radiograph = read_radiograph(path)
    wants_dicom = args.format in ("dicom", "all")
    if wants_dicom:
        if radiograph.dataset is None:
            raise CXRXAIError(f"{path}: DICOM results need a DICOM source image; use --format files")
        check_reference_uids(radiograph.dataset)
    explanation = explainer.explain(radiograph, findings, methods, lung_mask=args.lung_mask)
    stem = radiograph.stem
    stems[stem] = stems.get(stem, 0) + 1
    folder = args.out / (stem if stems[stem] == 1 else f"{stem}-{stems[stem]}")
    if args.format in ("files", "all"):
        explanation.save(folder)
        write_overview(explanation, radiograph.pixels, folder / "overview.png")
    if wants_dicom:
        assert radiograph.dataset is not None
        results = build_dicom_results(
            explanation,
            radiograph.dataset,
            radiograph.pixels,
            selection,
            transfer_syntax=args.transfer_syntax,
            layer_maps=args.dicom_layer_maps,
        )
        save_dicom_results(results.datasets, folder / "dicom")
        for line in results.missing:
            _report(progress, f"cxrxai: {path}: warning: {line}")
    return folder, explanation


def _progress(items: list[Path]):
    """A progress bar on stderr when there are several inputs."""
    if len(items) < 3:
        return items
    from tqdm import tqdm

    return tqdm(items, unit="image", file=sys.stderr)


def _report(progress, line: str) -> None:
    """One line on stderr that does not tear a progress bar."""
    if hasattr(progress, "write"):
        progress.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)


def run_phantoms(args: argparse.Namespace) -> int:
    from cxrxai.phantoms.cli import generate

    if args.count < 1 or args.size < 64 or args.workers < 1:
        raise CXRXAIError("--count and --workers must be at least 1, --size at least 64")
    formats = {"dicom", "png"} if args.format == "both" else {args.format}
    written = generate(args.count, args.out, args.seed, formats, args.size, args.workers)
    print(f"{written} phantoms in {args.out} (train.csv in the CheXpert layout, masks/, ground_truth.json)")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from cxrxai.model.network import network_from_options
    from cxrxai.train.trainer import TrainConfig, train

    network = network_from_options(args.channels, args.strides, args.max_pool)
    digest = train(
        TrainConfig(
            data=args.data,
            layout=args.layout,
            out=args.out,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            input_size=args.input_size,
            network=network,
            uncertain=args.uncertain,
            finding_mask_weight=args.finding_mask_weight,
            finding_mask_map=args.finding_mask_map,
            finding_pointing_weight=args.finding_pointing_weight,
            finding_pointing_skip=tuple(args.finding_pointing_skip),
            seed=args.seed,
            device=args.device,
            workers=args.workers,
            cache=not args.no_cache,
            resume=args.resume,
            compile=args.compile,
            name=args.name,
        )
    )
    print(f"{args.out}: trained bundle, content hash {digest}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from cxrxai.evaluate import evaluate

    report = evaluate(
        args.data, args.bundle, args.out, args.layout, tuple(args.methods), faithfulness=args.faithfulness
    )
    mean = report["mean_auroc"]
    print(f"{report['images']} images; mean AUROC {mean:.3f}" if mean is not None else "mean AUROC n/a")
    print(f"report in {args.out / 'report.md'}")
    return 0


def iso_date(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-31") from None


def _add_filters(parser: argparse.ArgumentParser) -> None:
    """The filters of `ResultsIndex.query`, shared by query and export."""
    parser.add_argument("--index", default="cxrxai-results.sqlite", help="SQLite file or database URL")
    parser.add_argument("--finding", default=None)
    parser.add_argument("--min-probability", type=float, default=None)
    parser.add_argument("--max-probability", type=float, default=None)
    parser.add_argument("--decision", choices=("present", "absent"), default=None)
    parser.add_argument(
        "--from", dest="date_from", type=iso_date, default=None, help="study date, YYYY-MM-DD"
    )
    parser.add_argument("--to", dest="date_to", type=iso_date, default=None, help="study date, YYYY-MM-DD")
    parser.add_argument("--model-version", default=None)
    parser.add_argument("--study", default=None, help="Study Instance UID")
    parser.add_argument("--patient", default=None, help="Patient ID")


def _filters(args: argparse.Namespace) -> dict:
    return {
        "finding": args.finding,
        "min_probability": args.min_probability,
        "max_probability": args.max_probability,
        "decision": None if args.decision is None else args.decision == "present",
        "date_from": args.date_from,
        "date_to": args.date_to,
        "model_version": args.model_version,
        "study_instance_uid": args.study,
        "patient_id": args.patient,
    }


def run_results_ingest(args: argparse.Namespace) -> int:
    from cxrxai.index import ResultsIndex

    if not args.inputs:
        raise CXRXAIError("give SR files or folders to ingest")
    ingest_files(ResultsIndex(args.index), args.inputs)
    return 0


def ingest_files(index, inputs: list[Path]) -> None:
    """Index SR files and folders, printing what was added and, on stderr, what was skipped and why."""
    report = index.ingest(inputs)
    for path, why in report.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(
        f"{report.added} added, {report.unchanged} already indexed, {report.attached} result files "
        f"attached, {len(report.skipped)} skipped"
    )


def run_results_query(args: argparse.Namespace) -> int:
    from cxrxai.index import ResultsIndex

    frame = ResultsIndex(args.index).query(
        **_filters(args), sort=args.sort, descending=args.descending, limit=args.limit
    )
    if args.format == "parquet":
        if args.out is None:
            raise CXRXAIError("--format parquet writes a file: add --out FILE.parquet")
        frame.to_parquet(args.out, index=False)
        print(f"{len(frame)} rows written to {args.out}")
        return 0
    if args.format == "csv":
        text = frame.to_csv(index=False)
    elif args.format == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=1) + "\n"
    else:
        text = (query_table(frame, args.columns, args.wide) if len(frame) else "no matching findings") + "\n"
    if args.out is not None:
        args.out.write_text(text)
        print(f"{len(frame)} rows written to {args.out}")
    else:
        print(text, end="")
    return 0


TABLE_COLUMNS = (
    "study_date", "patient_id", "study_instance_uid", "sop_instance_uid", "view_position", "finding",
    "probability", "threshold", "present", "cardiothoracic_ratio", "model_version",
)  # fmt: skip
SHORT_UID = 10  # the last digits of a UID: enough to tell a screen's rows apart (--wide or CSV for all)


def query_table(frame, columns: list[str] | None, wide: bool) -> str:
    """The query's rows for a terminal: by default a summary that fits about 150 columns (dates as
    dates, UIDs by their last digits, rounded numbers, PRESENT / absent); `columns` picks others;
    `wide` prints every column in full. CSV, JSON and Parquet always carry everything."""
    if wide:
        return str(frame.to_string(index=False))
    chosen = list(columns or TABLE_COLUMNS)
    unknown = [c for c in chosen if c not in frame.columns]
    if unknown:
        raise CXRXAIError(f"unknown column {unknown[0]!r}; one of: {', '.join(frame.columns)}")
    shown = frame[chosen].copy()
    for column in chosen:
        if column.endswith("_uid"):
            shown[column] = shown[column].map(
                lambda u: u if len(u) <= SHORT_UID + 1 else "…" + u[-SHORT_UID:]
            )
        elif column == "study_date":
            shown[column] = shown[column].map(lambda d: "" if d is None or d != d else str(d)[:10])
        elif column == "present":
            shown[column] = shown[column].map({True: "PRESENT", False: "absent"})
        elif column == "model_hash":
            shown[column] = shown[column].str.slice(0, 19)
    names = {
        "study_instance_uid": "study", "sop_instance_uid": "image", "series_instance_uid": "series",
        "sr_sop_instance_uid": "sr", "cardiothoracic_ratio": "ctr", "present": "decision",
        "view_position": "view", "model_version": "model", "processing_seconds": "seconds",
    }  # fmt: skip
    formats = {
        "probability": "{:.3f}".format, "threshold": "{:.2f}".format,
        "cardiothoracic_ratio": "{:.3f}".format, "processing_seconds": "{:.2f}".format,
    }  # fmt: skip
    shown = shown.rename(columns=names)
    return str(
        shown.to_string(index=False, formatters={names.get(k, k): f for k, f in formats.items()}, na_rep="")
    )


def run_results_stats(args: argparse.Namespace) -> int:
    from cxrxai.index import ResultsIndex
    from cxrxai.index.stats import finding_summary, prevalence_by_month, write_plots

    rows = ResultsIndex(args.index).query(
        date_from=args.date_from, date_to=args.date_to, model_version=args.model_version
    )
    if rows.empty:
        raise CXRXAIError("no indexed results match; ingest SR results first (cxrxai results ingest)")
    summary, monthly = finding_summary(rows), prevalence_by_month(rows)
    if args.format == "json":
        print(json.dumps({"findings": summary.to_dict(orient="records"),
                          "prevalence_by_month": monthly.to_dict(orient="index")}, indent=1))  # fmt: skip
    elif args.format == "csv":
        print(summary.to_csv(index=False), end="")
    else:
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print("\nprevalence by study month:")
        print(monthly.T.to_string(float_format=lambda v: f"{v:.2f}"))
    if args.plots is not None:
        for path in write_plots(rows, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def run_results_export(args: argparse.Namespace) -> int:
    from cxrxai.index import ResultsIndex
    from cxrxai.index.export import export_cohort

    key = None
    if args.key_file is not None:
        try:
            key = args.key_file.read_text().strip()
        except OSError as exc:
            raise CXRXAIError(f"--key-file {args.key_file}: {exc.strerror}") from None
        if len(key) < 16:
            raise CXRXAIError(f"--key-file {args.key_file}: the key must be at least 16 characters")
    report = export_cohort(ResultsIndex(args.index), args.out, key, args.heatmaps, **_filters(args))
    print(
        f"{report.images} images of {report.patients} patients de-identified into {report.folder} "
        f"({report.files} DICOM files, cohort.csv, cohort.parquet)"
    )
    return 0


def run_create_untrained(args: argparse.Namespace) -> int:
    from cxrxai.model.bundle import make_untrained_bundle

    digest = make_untrained_bundle(args.out, input_size=args.input_size, seed=args.seed)
    print(f"{args.out}: UNTRAINED bundle, content hash {digest}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from cxrxai.model.bundle import load_bundle

    bundle = load_bundle(args.bundle, args.hash)
    print(f"{args.bundle}: {bundle.spec.name} {bundle.spec.version} {bundle.content_hash}")
    return 0


def run_check_anatomy(args: argparse.Namespace) -> int:
    """A table of the anatomy checks per radiograph; exit status 1 when any radiograph fails one or cannot
    be read (one line each, the others go on)."""
    from cxrxai.explain import Explainer
    from cxrxai.io import read_radiograph
    from cxrxai.plausibility import check_radiograph, check_reframings, plausible

    if args.reframings < 0:
        raise CXRXAIError(f"--reframings {args.reframings}: give 0 or more copies")
    if args.json and args.json.suffix.lower() != ".json":  # `--json a.dcm b.dcm` would overwrite a.dcm
        raise CXRXAIError(
            f"--json {args.json}: give a report path ending in .json, before or after the inputs"
        )
    paths = expand_inputs(args.inputs)
    if not paths:
        raise CXRXAIError("no radiographs found in the inputs; give radiograph files or folders")
    explainer = Explainer.from_bundle(args.bundle or DEFAULT_BUNDLE, device=args.device)
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
    report, failed, unreadable = {}, 0, 0
    for path in paths:
        try:
            radiograph = read_radiograph(path)
        except CXRXAIError as exc:
            unreadable += 1
            print(f"cxrxai: {exc}", file=sys.stderr)
            continue
        figure = args.figures / f"{path.stem}-anatomy.png" if args.figures else None
        checked = check_radiograph(explainer, radiograph, figure)
        checks = checked.after
        entry = report[str(path)] = {
            "checks": {check.name: check.as_dict() for check in checks},
            "checks_before_post_processing": {check.name: check.as_dict() for check in checked.before},
        }
        failed += not plausible(checks)
        print(f"{path}: {'plausible' if plausible(checks) else 'IMPLAUSIBLE'}")
        for check in checks:
            mark = "ok  " if check.passed else "FAIL"
            print(f"  {mark} {check.name:32s} {check.value:7.3f}  ({check.bound}: {check.meaning})")
        print(f"  before post-processing: {_passing(checked.before)}")
        if args.reframings:
            after, before = check_reframings(explainer, radiograph, args.reframings)
            entry["reframings"] = after.as_dict()
            entry["reframings_before_post_processing"] = before.as_dict()
            print(f"  {after.summary()}")
            print(f"  before post-processing, {before.summary()}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    read = len(paths) - unreadable
    print(f"{read - failed} of {read} radiographs plausible")
    if unreadable:
        print(f"cxrxai: {unreadable} of {len(paths)} inputs could not be read", file=sys.stderr)
    return 1 if failed or unreadable else 0


def _passing(checks) -> str:
    failing = [check.name for check in checks if not check.passed]
    passed = len(checks) - len(failing)
    return f"{passed} of {len(checks)} checks pass" + (f" (failing: {', '.join(failing)})" if failing else "")


if __name__ == "__main__":
    sys.exit(main())
