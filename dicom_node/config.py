"""The node's configuration: one TOML file, overridable by environment variables, validated at start.

Environment overrides use `CXRXAI_NODE_<SECTION>_<KEY>` (upper case), e.g. `CXRXAI_NODE_NODE_PORT=11113`
or `CXRXAI_NODE_PROCESSING_WORKERS=2`; values are parsed as TOML values when they can be (numbers,
booleans, arrays) and taken as strings otherwise. Every problem is reported at once, one readable line
each, with the key that has it, so an operator fixes the file in one go.

Example (`docs/node.md` has every key):

    [node]
    ae_title = "CXRXAI"
    port = 11112
    allowed_calling_ae_titles = ["ORTHANC"]
    allowed_networks = ["10.0.0.0/8"]

    [[destinations]]
    name = "pacs"
    ae_title = "ORTHANC"
    host = "10.1.2.3"
    port = 4242

Destinations are validated by their kind (`dicom_node.destinations`): each kind checks its own fields.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from cxrxai.model.layout import is_bundle
from dicom_node.destinations import Destination, Kind, kinds
from dicom_node.state import TRIAGE_WEBHOOK

ENV_PREFIX = "CXRXAI_NODE_"


class ConfigError(ValueError):
    """The configuration cannot be used; the message lists every problem, one per line."""


@dataclass(frozen=True)
class TLSConfig:
    enabled: bool = False
    certificate: Path | None = None  # the node's server certificate (PEM)
    private_key: Path | None = None
    ca_certificates: Path | None = None  # CAs that sign client certificates (and destinations' servers)
    require_client_certificate: bool = False


@dataclass(frozen=True)
class NodeSection:
    ae_title: str = "CXRXAI"
    bind_address: str = "0.0.0.0"
    port: int = 11112
    allowed_calling_ae_titles: tuple[str, ...] = ()  # empty: any calling AE title
    allowed_networks: tuple[str, ...] = ()  # empty: any source address
    max_associations: int = 10
    # refuse new associations (transient, local limit exceeded) above this share of the spool disk used
    max_disk_use_percent: float = 90.0
    study_quiet_seconds: float = 5.0  # a study is complete when nothing arrived for this long
    tls: TLSConfig = field(default_factory=TLSConfig)


@dataclass(frozen=True)
class PathsSection:
    spool: Path = Path("node-data/spool")
    database: Path = Path("node-data/node.sqlite")
    results: Path = Path("node-data/results")  # every result object is also kept here
    audit_log: Path = Path("node-data/audit.log")
    index: Path = Path("node-data/results.sqlite")  # the results index (cxrxai results query --index)
    index_url: str = ""  # a database URL instead (postgresql+psycopg://...), for an index shared by nodes

    @property
    def index_location(self) -> str:
        return self.index_url or str(self.index)


@dataclass(frozen=True)
class ProcessingSection:
    workers: int = 1
    device: str = "cpu"
    bundle: Path | None = None  # None: the shipped default bundle
    bundle_hash: str | None = None  # pin the bundle: refuse to start with any other
    methods: tuple[str, ...] = ("gradcam",)
    heatmaps: str = "above-threshold"  # which findings get heatmap objects (see HeatmapSelection)
    transfer_syntax: str = "explicit-little-endian"  # of SEG and Secondary Capture (cxrxai.dicom.encoding)
    layer_maps: bool = False  # also the FRACTIONAL SEG of every layer's map
    max_attempts: int = 2  # a job that fails this often is marked failed with its error


@dataclass(frozen=True)
class RoutingSection:
    modalities: tuple[str, ...] = ("CR", "DX")
    body_parts: tuple[str, ...] = ("CHEST", "THORAX", "LUNG", "RIB", "RIBS")
    views: tuple[str, ...] = ("PA", "AP")
    # when Body Part Examined / View Position are missing, look for these words in the descriptions
    description_keywords: tuple[str, ...] = ("CHEST", "THORAX", "THX", "CXR", "LUNG", "TORAX")


class QueueBackend(StrEnum):
    EMBEDDED = "embedded"  # the SQLite queue and local worker processes
    CELERY = "celery"  # a Celery task queue on Redis, served by `cxrxai worker`s (docs/scale-out.md)


class StorageKind(StrEnum):
    FOLDER = "folder"  # the folders in [paths], mounted on every machine
    S3 = "s3"  # S3-compatible object storage


@dataclass(frozen=True)
class QueueSection:
    """Where study jobs go: the embedded SQLite queue and local worker processes (default), or a Celery
    task queue on a Redis broker served by `cxrxai worker` processes on any machine that mounts the
    spool and results folders (docs/scale-out.md)."""

    backend: QueueBackend = QueueBackend.EMBEDDED
    broker_url: str = ""  # redis://host:6379/0 (also the result backend)
    task_queue: str = "cxrxai"
    # a job not acknowledged within this time goes to another worker: longer than the slowest job
    visibility_timeout_seconds: float = 3600.0


@dataclass(frozen=True)
class StorageSection:
    """How remote workers reach the spooled instances and return results: shared folders (the paths in
    [paths], mounted on every machine) or S3-compatible object storage. Credentials come from the usual
    AWS environment variables or files, never from node.toml."""

    kind: StorageKind = StorageKind.FOLDER
    s3_bucket: str = ""
    s3_prefix: str = "cxrxai"
    s3_endpoint_url: str = ""  # empty: AWS; e.g. https://minio.example.org:9000
    s3_region: str = ""


@dataclass(frozen=True)
class RetrySection:
    max_attempts: int = 8  # then the delivery is dead-lettered until `cxrxai node resend`
    initial_delay_seconds: float = 5.0
    max_delay_seconds: float = 600.0
    multiplier: float = 2.0


@dataclass(frozen=True)
class TriageRule:
    finding: str
    min_probability: float


@dataclass(frozen=True)
class TriageSection:
    rules: tuple[TriageRule, ...] = ()
    webhook_url: str | None = None  # a webhook destination of its own, named TRIAGE_WEBHOOK

    def destination(self) -> Destination | None:
        """The webhook destination that `webhook_url` stands for."""
        if not self.webhook_url:
            return None
        return Destination(TRIAGE_WEBHOOK, kind=Kind.WEBHOOK, url=self.webhook_url)


@dataclass(frozen=True)
class MetricsSection:
    port: int | None = None  # None: no HTTP endpoint; 0: any free port
    bind_address: str = "127.0.0.1"


@dataclass(frozen=True)
class NodeConfig:
    node: NodeSection = field(default_factory=NodeSection)
    paths: PathsSection = field(default_factory=PathsSection)
    processing: ProcessingSection = field(default_factory=ProcessingSection)
    routing: RoutingSection = field(default_factory=RoutingSection)
    queue: QueueSection = field(default_factory=QueueSection)
    storage: StorageSection = field(default_factory=StorageSection)
    destinations: tuple[Destination, ...] = ()  # the [[destinations]] entries; see all_destinations
    retry: RetrySection = field(default_factory=RetrySection)
    triage: TriageSection = field(default_factory=TriageSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)

    @property
    def all_destinations(self) -> tuple[Destination, ...]:
        """What the outbox delivers to: the [[destinations]] and the one `[triage] webhook_url` stands for."""
        triage = self.triage.destination()
        return self.destinations if triage is None else (*self.destinations, triage)


SECTIONS: dict[str, type] = {
    "node": NodeSection,
    "paths": PathsSection,
    "processing": ProcessingSection,
    "routing": RoutingSection,
    "queue": QueueSection,
    "storage": StorageSection,
    "retry": RetrySection,
    "triage": TriageSection,
    "metrics": MetricsSection,
}


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Read the TOML file (if any), apply environment overrides, validate; raise ConfigError listing all
    problems. Relative paths in the file are relative to the file's folder."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such configuration file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        base = path.resolve().parent
    problems: list[str] = []
    _apply_environment(raw, environ, problems)
    config = _build(raw, base, problems)
    if config is not None:
        problems.extend(validate(config))
    if problems:
        where = f"{path}: " if path else ""
        raise ConfigError("\n".join(f"{where}{problem}" for problem in problems))
    assert config is not None
    return config


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str], problems: list[str]) -> None:
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            problems.append(f"{name}: no section {rest.split('_')[0]!r} (use one of {', '.join(SECTIONS)})")
            continue
        key = rest[len(section) + 1 :]
        if section == "node" and key.startswith("tls_"):
            raw.setdefault("node", {}).setdefault("tls", {})[key[4:]] = _parse_value(text)
        else:
            raw.setdefault(section, {})[key] = _parse_value(text)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _build(raw: dict[str, Any], base: Path, problems: list[str]) -> NodeConfig | None:
    unknown = set(raw) - set(SECTIONS) - {"destinations"}
    for name in sorted(unknown):
        problems.append(f"unknown section [{name}] (known: {', '.join([*SECTIONS, 'destinations'])})")
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        section = raw.get(name, {})
        if not isinstance(section, dict):
            problems.append(f"[{name}] must be a table")
            continue
        built[name] = _section(cls, section, name, base, problems)
    destinations = []
    for index, entry in enumerate(raw.get("destinations", [])):
        destinations.append(_section(Destination, entry, f"destinations[{index}]", base, problems))
    if problems:
        return None
    return NodeConfig(**built, destinations=tuple(destinations))


def _section(cls: type, values: dict[str, Any], where: str, base: Path, problems: list[str]) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            problems.append(f"{where}.{key}: unknown key (known: {', '.join(known)})")
            continue
        kind = str(known[key].type)
        try:
            kwargs[key] = _convert(kind, value, base, where, key, problems)
        except (TypeError, ValueError) as exc:
            problems.append(f"{where}.{key}: {exc}")
    missing = [
        f.name
        for f in fields(cls)
        if f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING
    ]
    for name in missing:
        problems.append(f"{where}.{name}: required")
    if missing:
        return None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        problems.append(f"{where}: {exc}")
        return None


# the enumerations node.toml values may name, by their annotation
CHOICES: dict[str, type[StrEnum]] = {"QueueBackend": QueueBackend, "StorageKind": StorageKind}


def _convert(kind: str, value: Any, base: Path, where: str, key: str, problems: list[str]) -> Any:
    if kind in CHOICES:
        values = [choice.value for choice in CHOICES[kind]]
        if value not in values:
            raise ValueError(f"{value!r} is not {' or '.join(values)}")
        return CHOICES[kind](value)
    if kind == "TLSConfig":
        if not isinstance(value, dict):
            raise TypeError("must be a table")
        return _section(TLSConfig, value, f"{where}.tls", base, problems)
    if kind == "tuple[TriageRule, ...]":
        if not isinstance(value, list):
            raise TypeError("must be an array of tables with finding and min_probability")
        return tuple(
            _section(TriageRule, rule, f"{where}.{key}[{i}]", base, problems) for i, rule in enumerate(value)
        )
    if kind.startswith("tuple[str"):
        if isinstance(value, str) or not isinstance(value, list):
            raise TypeError(f"must be an array of strings, got {value!r}")
        return tuple(str(v) for v in value)
    if "Path" in kind:
        if value is None or value == "":
            return None
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else base / path
    if kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"must be a whole number, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"must be a number, got {value!r}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"must be true or false, got {value!r}")
        return value
    if kind.startswith("str"):
        if not isinstance(value, str):
            raise TypeError(f"must be a string, got {value!r}")
        return value
    return value


def validate(config: NodeConfig) -> list[str]:
    """Problems with values that parse but cannot work."""
    from cxrxai.labels import FINDINGS

    problems = []
    node = config.node
    if not 1 <= len(node.ae_title.strip()) <= 16:
        problems.append(f"node.ae_title: {node.ae_title!r} must be 1-16 characters")
    if not 0 <= node.port <= 65535:
        problems.append(f"node.port: {node.port} is not a TCP port")
    for network in node.allowed_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            problems.append(
                f"node.allowed_networks: {network!r} is not an address or network (e.g. 10.0.0.0/8)"
            )
    if not 0 < node.max_disk_use_percent <= 100:
        problems.append("node.max_disk_use_percent: must be above 0 and at most 100")
    if node.study_quiet_seconds < 0:
        problems.append("node.study_quiet_seconds: must not be negative")
    tls = node.tls
    if tls.enabled:
        for name in ("certificate", "private_key"):
            value = getattr(tls, name)
            if value is None or not value.is_file():
                problems.append(f"node.tls.{name}: TLS is enabled but {value} is not a file")
        if tls.require_client_certificate and (
            tls.ca_certificates is None or not tls.ca_certificates.is_file()
        ):
            problems.append("node.tls.ca_certificates: needed to verify client certificates")
    queue = config.queue
    if queue.backend is QueueBackend.CELERY and not queue.broker_url.startswith(("redis://", "rediss://")):
        problems.append("queue.broker_url: the celery backend needs a Redis URL, e.g. redis://host:6379/0")
    storage = config.storage
    if storage.kind is StorageKind.S3 and not storage.s3_bucket:
        problems.append("storage.s3_bucket: the s3 storage needs a bucket")
    if storage.kind is StorageKind.S3 and queue.backend is not QueueBackend.CELERY:
        problems.append('storage.kind: s3 carries jobs to remote workers; it needs queue.backend = "celery"')
    if queue.visibility_timeout_seconds <= 0:
        problems.append("queue.visibility_timeout_seconds: must be above 0 (longer than the slowest job)")
    processing = config.processing
    if processing.workers < 1:
        problems.append("processing.workers: at least 1")
    if processing.max_attempts < 1:
        problems.append("processing.max_attempts: at least 1")
    if processing.bundle is not None and not is_bundle(processing.bundle):
        problems.append(
            f"processing.bundle: {processing.bundle} is not a MONAI bundle (no configs/metadata.json)"
        )
    from cxrxai.dicom.result_objects import HeatmapSelection

    try:
        HeatmapSelection(processing.heatmaps)
    except ValueError as exc:
        problems.append(f"processing.heatmaps: {exc}")
    from cxrxai.dicom.encoding import TRANSFER_SYNTAXES

    if processing.transfer_syntax not in TRANSFER_SYNTAXES:
        problems.append(
            f"processing.transfer_syntax: {processing.transfer_syntax!r}: "
            f"use one of {', '.join(TRANSFER_SYNTAXES)}"
        )
    problems.extend(_destination_problems(config))
    retry = config.retry
    if retry.max_attempts < 1 or retry.initial_delay_seconds < 0 or retry.multiplier < 1:
        problems.append("retry: max_attempts >= 1, initial_delay_seconds >= 0 and multiplier >= 1")
    for rule in config.triage.rules:
        if rule is None:
            continue
        if rule.finding not in FINDINGS:
            problems.append(f"triage.rules: unknown finding {rule.finding!r} (one of: {', '.join(FINDINGS)})")
        if not 0 <= rule.min_probability <= 1:
            problems.append(f"triage.rules: {rule.finding} min_probability must be between 0 and 1")
    return problems


def _destination_problems(config: NodeConfig) -> list[str]:
    """Each destination: a unique name, a known kind, a known transfer syntax, and what its kind checks.
    Problems of the triage webhook's destination are reported on `triage.webhook_url`, the key the
    operator set."""
    from cxrxai.dicom.encoding import TRANSFER_SYNTAXES

    entries = [(d, f"destinations.{d.name}.") for d in config.destinations]
    triage = config.triage.destination()
    if triage is not None:
        entries.append((triage, "triage.webhook_"))
    registered = kinds()
    problems = []
    names = set()
    for destination, where in entries:
        if destination.name in names:
            taken = " ([triage] webhook_url takes it)" if destination is triage else ""
            problems.append(f"destinations: the name {destination.name!r} is used twice{taken}")
        names.add(destination.name)
        if destination.transfer_syntax and destination.transfer_syntax not in TRANSFER_SYNTAXES:
            problems.append(
                f"{where}transfer_syntax: {destination.transfer_syntax!r}: "
                f"use one of {', '.join(TRANSFER_SYNTAXES)}"
            )
        kind = registered.get(destination.kind)
        if kind is None:
            known = ", ".join(sorted(registered))
            problems.append(f"{where}kind: {destination.kind!r} is not a destination kind (known: {known})")
        else:
            problems.extend(where + problem for problem in kind.check(destination))
    return problems
