"""Where a MONAI bundle keeps its parts, and where the shipped default bundle lies. No torch: the node's
configuration check, the command line and the 3D Slicer module share this one definition."""

from __future__ import annotations

from pathlib import Path

METADATA = Path("configs/metadata.json")
INFERENCE = Path("configs/inference.json")
WEIGHTS = Path("models/model.pt")
TORCHSCRIPT = Path("models/model.ts")
EVALUATION = Path("docs/evaluation.json")
# the default model, in a source checkout or an installation from it (`make model` re-makes it)
DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "resources" / "bundles" / "default"


def is_bundle(folder: str | Path) -> bool:
    """Whether `folder` holds a bundle (its metadata file)."""
    return (Path(folder) / METADATA).is_file()
