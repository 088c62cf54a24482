"""The ordered label sets the model speaks: 14 CheXpert / MIMIC-CXR observations and 3 anatomy structures.

The order is the CheXpert / MIMIC-CXR column order; bundles store their own copy in `metadata.json`, and a
bundle whose labels differ from these is refused by the loader, because downstream coding tables (SR codes,
Slicer colours) are keyed on these names.
"""

import re

FINDINGS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

# Channels of the segmentation head. Sigmoid per channel: the heart overlaps the lung fields on a projection.
ANATOMY: tuple[str, ...] = ("Right Lung", "Left Lung", "Heart")
LUNG_CHANNELS: tuple[int, ...] = (0, 1)
HEART_CHANNEL = 2

# Findings whose evidence lies partly outside the lung fields: lung-masked maps under-report them.
EVIDENCE_OUTSIDE_LUNGS: frozenset[str] = frozenset(
    {
        "Cardiomegaly",
        "Enlarged Cardiomediastinum",
        "Pleural Effusion",
        "Pleural Other",
        "Fracture",
        "Support Devices",
    }
)


def resolve_findings(requested: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Map user spellings (case-insensitive, '_' or '-' for spaces) to canonical finding names, in order.

    Raises ValueError naming the unknown finding and listing the valid ones.
    """
    if not requested:
        return FINDINGS
    by_key = {_key(name): name for name in FINDINGS}
    chosen: list[str] = []
    for item in requested:
        name = by_key.get(_key(item))
        if name is None:
            raise ValueError(f"unknown finding {item!r}; choose from: {', '.join(FINDINGS)}")
        if name not in chosen:
            chosen.append(name)
    return tuple(sorted(chosen, key=FINDINGS.index))


def _key(name: str) -> str:
    return name.strip().lower().replace("_", " ").replace("-", " ")


def slug(name: str) -> str:
    """File-name form of a label: 'Right Lung' -> 'right_lung' (mask files, report keys)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
