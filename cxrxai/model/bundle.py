"""MONAI bundle I/O: `configs/metadata.json`, `configs/inference.json`, `models/model.pt`, `models/model.ts`.

Our loader never evaluates `inference.json` (its `$` expressions run as Python): it reads the plain JSON
metadata, checks the content hash, and loads the weights with `torch.load(weights_only=True)`.
`inference.json` is for `python -m monai.bundle run`, MONAI Deploy and MONAI Label, which use the same
transform parameters we apply (`cxrxai.model.preprocess`).

The content hash is SHA-256 over the canonical JSON of the model-defining metadata (labels, thresholds,
preprocessing, network hyper-parameters, name, version) followed by the bytes of `models/model.pt`, so a
retrained model, a changed threshold or a swapped weight file each change it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cxrxai import __version__
from cxrxai.errors import BundleError
from cxrxai.explanation import DISPLAYED_METHOD
from cxrxai.labels import ANATOMY, FINDINGS
from cxrxai.model.layout import EVALUATION, INFERENCE, METADATA, TORCHSCRIPT, WEIGHTS
from cxrxai.model.network import CXRUNet, NetworkConfig, build_network

HASH_PREFIX = "sha256:"


@dataclass(frozen=True)
class Preprocessing:
    """Intensity and geometry normalisation, stored in the bundle so training and inference agree."""

    input_size: int = 256
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(int(data["input_size"]), float(data["lower_percentile"]), float(data["upper_percentile"]))


@dataclass(frozen=True)
class BundleSpec:
    """Everything in `metadata.json` that defines the model's behaviour."""

    name: str
    version: str
    network: NetworkConfig
    preprocessing: Preprocessing
    thresholds: dict[str, float]
    anatomy_threshold: float = 0.5
    trained: bool = False
    description: str = ""
    findings: tuple[str, ...] = FINDINGS
    anatomy: tuple[str, ...] = ANATOMY
    extra: dict[str, Any] = field(default_factory=dict)

    def hashed_content(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "findings": list(self.findings),
            "anatomy": list(self.anatomy),
            "thresholds": {k: float(self.thresholds[k]) for k in self.findings},
            "anatomy_threshold": float(self.anatomy_threshold),
            "preprocessing": self.preprocessing.__dict__,
            "network": self.network.as_dict(),
            "trained": self.trained,
        }


@dataclass
class Bundle:
    """A loaded, hash-checked bundle with its network in eval mode."""

    root: Path
    spec: BundleSpec
    content_hash: str
    network: CXRUNet
    # finding -> the Grad-CAM layer results lead with (`display_layers()`); the fused map where absent
    display_layers: dict[str, str] = field(default_factory=dict)

    @property
    def thresholds(self) -> list[float]:
        return [self.spec.thresholds[name] for name in self.spec.findings]


def content_hash(spec: BundleSpec, weights: bytes) -> str:
    canonical = json.dumps(spec.hashed_content(), sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(canonical)
    digest.update(weights)
    return HASH_PREFIX + digest.hexdigest()


def load_bundle(root: str | Path, expected_hash: str | None = None, device: str = "cpu") -> Bundle:
    """Load a bundle folder; refuse it if it is incomplete, altered, or not the configured one."""
    root = Path(root)
    if not (root / METADATA).is_file():
        raise BundleError(f"{root}: not a MONAI bundle (no {METADATA}); pass --bundle with a bundle folder")
    try:
        metadata = json.loads((root / METADATA).read_text(encoding="utf-8"))
        spec = _spec_from_metadata(metadata)
        stored_hash = metadata["cxrxai"]["content_hash"]
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(
            f"{root / METADATA}: malformed cxrxai metadata ({exc!r}); re-export the bundle"
        ) from exc
    if tuple(spec.findings) != FINDINGS or tuple(spec.anatomy) != ANATOMY:
        raise BundleError(
            f"{root}: labels differ from the 14 CheXpert findings / 3 anatomy structures in order"
        )
    if not (root / WEIGHTS).is_file():
        raise BundleError(f"{root}: {WEIGHTS} is missing")
    weights = (root / WEIGHTS).read_bytes()
    actual = content_hash(spec, weights)
    if actual != stored_hash:
        raise BundleError(
            f"{root}: content hash {actual} does not match metadata ({stored_hash}); bundle altered"
        )
    if expected_hash and _normalise_hash(expected_hash) != actual:
        raise BundleError(
            f"{root}: bundle hash {actual} is not the configured {_normalise_hash(expected_hash)}; "
            "refusing to run an unapproved model"
        )
    network = build_network(spec.network)
    import io

    state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise BundleError(f"{root}: weights do not fit the network in metadata ({str(exc)[:200]})") from exc
    network.to(device).eval()
    return Bundle(
        root=root, spec=spec, content_hash=actual, network=network, display_layers=display_layers(root)
    )


def display_layers(root: Path) -> dict[str, str]:
    """Per finding, the Grad-CAM layer whose maps overlapped that finding's masks best in the bundle's own
    evaluation (`docs/evaluation.json`, mean IoU at per-finding tuned thresholds); the best layer over all
    findings for a finding the evaluation had no positives of; empty (the fused map) without an evaluation.

    Which layer reads best depends on the model and the finding: for an average-pooled head the fused map
    localised best, while a max-pooled head concentrates the fused map (exactly) on one cell per channel, a
    few dots on an overlay, and a decoder level shows the region; an enlarged mediastinum reads best at
    decoder1, most lung findings at decoder2. A display choice only: every layer is still written.
    """
    try:
        report = json.loads((root / EVALUATION).read_text(encoding="utf-8"))
        overall = _best_layer(report["localisation"])
        by_finding = {
            f: _best_layer(scores) for f, scores in report.get("localisation_by_finding", {}).items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # no (readable) evaluation shipped with the bundle
    if overall is None:
        return {}
    return {finding: by_finding.get(finding) or overall for finding in FINDINGS if finding != "No Finding"}


def _best_layer(scores: dict[str, Any]) -> str | None:
    tuned = {
        key.split("/", 1)[1]: float(entry["iou_tuned"]["mean"])
        for key, entry in scores.items()
        if key.startswith(DISPLAYED_METHOD + "/") and "iou_tuned" in entry
    }
    return max(tuned, key=tuned.__getitem__) if tuned else None


def _normalise_hash(value: str) -> str:
    value = value.strip().lower()
    return value if value.startswith(HASH_PREFIX) else HASH_PREFIX + value


def _spec_from_metadata(metadata: dict) -> BundleSpec:
    ours = metadata["cxrxai"]
    return BundleSpec(
        name=str(metadata["name"]),
        version=str(metadata["version"]),
        network=NetworkConfig.from_dict(ours["network"]),
        preprocessing=Preprocessing.from_dict(ours["preprocessing"]),
        thresholds={str(k): float(v) for k, v in ours["thresholds"].items()},
        anatomy_threshold=float(ours.get("anatomy_threshold", 0.5)),
        trained=bool(ours.get("trained", False)),
        description=str(metadata.get("description", "")),
        findings=tuple(ours["findings"]),
        anatomy=tuple(ours["anatomy"]),
    )


def write_bundle(root: str | Path, spec: BundleSpec, network: CXRUNet) -> str:
    """Write a complete bundle (metadata, inference config, weights, TorchScript); return its content hash."""
    import io

    import monai
    import numpy

    root = Path(root)
    for sub in ("configs", "models", "docs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    network = network.cpu().eval()
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    weights = buffer.getvalue()
    (root / WEIGHTS).write_bytes(weights)
    digest = content_hash(spec, weights)
    size = spec.preprocessing.input_size
    example = torch.zeros(1, 1, size, size)
    with torch.no_grad():
        traced = torch.jit.trace(network, example, strict=False)
    traced.save(str(root / TORCHSCRIPT))
    metadata = {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": spec.version,
        "changelog": {spec.version: spec.description or "exported by cxrxai"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"cxrxai": __version__},
        "name": spec.name,
        "task": "Chest radiograph: 14 CheXpert observations and lung / heart segmentation",
        "description": spec.description,
        "authors": "CXR-XAI",
        "copyright": "Copyright (c) CXR-XAI contributors, Apache-2.0",
        "intended_use": "Demonstration and pipeline validation; not for diagnostic use.",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "CR/DX",
                    "num_channels": 1,
                    "spatial_shape": [size, size],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    "channel_def": {"0": "image"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "probabilities",
                    "format": "multi-label logits (tuple element 0), anatomy logits (tuple element 1)",
                    "num_channels": len(spec.findings),
                    "spatial_shape": [1],
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": False,
                    "channel_def": {str(i): name for i, name in enumerate(spec.findings)},
                }
            },
        },
        "cxrxai": {**spec.hashed_content(), "content_hash": digest},
    }
    (root / METADATA).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    (root / INFERENCE).write_text(json.dumps(inference_config(spec), indent=2) + "\n", encoding="utf-8")
    return digest


def inference_config(spec: BundleSpec) -> dict[str, Any]:
    """`configs/inference.json` with MONAI's standard keys, for `python -m monai.bundle run`.

    It reads PNG / JPEG / DICOM files from `dataset_dir`, applies the same preprocessing as
    `cxrxai.model.preprocess`, and writes `predictions.csv` (sigmoid probabilities in label order) and the
    anatomy masks to `output_dir`.
    """
    p = spec.preprocessing
    net = spec.network.as_dict()
    return {
        "imports": ["$import glob", "$import os", "$import torch"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "$@bundle_root + '/samples'",
        "datalist": "$sorted(f for e in ('*.png', '*.jpg', '*.jpeg', '*.dcm') "
        "for f in glob.glob(os.path.join(@dataset_dir, e)))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": {"_target_": "cxrxai.model.network.CXRUNet", **net},
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "image_only": True},
                {"_target_": "EnsureChannelFirstd", "keys": "image", "channel_dim": "no_channel"},
                # MONAI readers return (columns, rows); the model works in (rows, columns).
                {"_target_": "Transposed", "keys": "image", "indices": [0, 2, 1]},
                {
                    "_target_": "ScaleIntensityRangePercentilesd",
                    "keys": "image",
                    "lower": p.lower_percentile,
                    "upper": p.upper_percentile,
                    "b_min": 0.0,
                    "b_max": 1.0,
                    "clip": True,
                },
                {
                    "_target_": "Resized",
                    "keys": "image",
                    "spatial_size": p.input_size,
                    "size_mode": "longest",
                    "mode": "area",
                },
                {
                    "_target_": "SpatialPadd",
                    "keys": "image",
                    "spatial_size": [p.input_size, p.input_size],
                    "method": "symmetric",
                },
                {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
            ],
        },
        "dataset": {
            "_target_": "Dataset",
            "data": "$[{'image': f} for f in @datalist]",
            "transform": "@preprocessing",
        },
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": 0,
        },
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {
                    "_target_": "Lambda",
                    "func": "$lambda d: dict(d, pred=torch.sigmoid(d['pred'][0]), "
                    "anatomy=(torch.sigmoid(d['pred'][1]) > "
                    + repr(spec.anatomy_threshold)
                    + ").to(torch.uint8))",
                },
            ],
        },
        "handlers": [
            {
                "_target_": "CheckpointLoader",
                "load_path": "$@bundle_root + '/models/model.pt'",
                "load_dict": {"model": "@network"},
                "map_location": "@device",
            },
            {
                "_target_": "ClassificationSaver",
                "output_dir": "@output_dir",
                "filename": "predictions.csv",
                "batch_transform": "$lambda batch: [item['image'].meta for item in batch]",
                "output_transform": "$lambda output: [o['pred'] for o in output]",
                "save_rank": 0,
            },
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
            "amp": False,
        },
        "initialize": ["$monai.utils.set_determinism(seed=0)", "$os.makedirs(@output_dir, exist_ok=True)"],
        "run": ["$@evaluator.run()"],
    }


def make_untrained_bundle(
    root: str | Path,
    network: NetworkConfig | None = None,
    input_size: int = 256,
    seed: int = 0,
    name: str = "cxrxai_unet_untrained",
) -> str:
    """Write a randomly initialised bundle (for tests and pipeline checks until a trained one ships).

    Its metadata says `trained: false`, and every command that uses it says so: its predictions carry no
    meaning.
    """
    config = network or NetworkConfig()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        net = build_network(config)
    finally:
        torch.random.set_rng_state(generator_state)
    spec = BundleSpec(
        name=name,
        version="0.0.1",
        network=config,
        preprocessing=Preprocessing(input_size=input_size),
        thresholds={f: 0.5 for f in FINDINGS},
        trained=False,
        description=f"UNTRAINED: random initialisation (seed {seed}); predictions are meaningless.",
    )
    return write_bundle(root, spec, net)
