"""What the module shows and in which order: method and layer names, colours by score, the heatmap
colour table and threshold, lung masking, the layer-comparison layout, and the radiograph geometry."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

FUSED = "fused"
LAYER_FAMILIES = ("encoder", "bottleneck", "decoder")


def method_name(method: str) -> str:
    """The name radiologists know the method by (the registry's title)."""
    from cxrxai.explain import registry

    return registry.title(method)


def sorted_methods(methods: Sequence[str]) -> list[str]:
    """Known methods in the registry's order, then unknown ones alphabetically."""
    from cxrxai.explain import registry

    order = list(registry.registered())
    return sorted(set(methods), key=lambda m: (order.index(m) if m in order else len(order), m))


def layer_key(layer: str) -> tuple[int, int]:
    """Encoder 1..N (shallow to deep), bottleneck, decoder N..1 (deep to shallow), then fused: the path
    the evidence takes through the U-Net. Unknown names sort last."""
    if layer == FUSED:
        return len(LAYER_FAMILIES), 0
    for family, prefix in enumerate(LAYER_FAMILIES):
        rest = layer[len(prefix) :]
        if layer.startswith(prefix) and (rest == "" or rest.isdigit()):
            depth = int(rest or 0)
            return family, depth if prefix == "encoder" else -depth
    return len(LAYER_FAMILIES) + 1, 0


def sorted_layers(layers: Sequence[str]) -> list[str]:
    return sorted(set(layers), key=lambda layer: (layer_key(layer), layer))


def layer_name(layer: str) -> str:
    """'encoder2' -> 'Encoder 2', 'bottleneck' -> 'Bottleneck', 'fused' -> 'Fused (all layers)'."""
    if layer == FUSED:
        return "Fused (all layers)"
    for prefix in LAYER_FAMILIES:
        if layer.startswith(prefix):
            rest = layer[len(prefix) :]
            return prefix.capitalize() + (f" {rest}" if rest else "")
    return layer


def comparison_layers(layers: Sequence[str], views: int) -> list[str]:
    """`views` layers spread evenly from the shallowest encoder to the last decoder (fused excluded), so
    the comparison shows how the evidence builds up; all of them when there are no more than `views`."""
    path = [layer for layer in sorted_layers(layers) if layer != FUSED]
    if len(path) <= views:
        return path
    picks = np.linspace(0, len(path) - 1, views).round().astype(int)
    return [path[i] for i in picks]


def comparison_layout_xml(views: int) -> str:
    """A Slicer layout of one row of `views` red-style slice views (CXRXAICompare1..N), for
    vtkMRMLLayoutNode.AddLayoutDescription."""
    if not 1 <= views <= 6:
        raise ValueError(f"a comparison shows 1 to 6 layers, not {views}")
    view = (
        '<item><view class="vtkMRMLSliceNode" singletontag={tag}>'
        '<property name="orientation" action="default">Axial</property>'
        '<property name="viewlabel" action="default">{number}</property>'
        '<property name="viewcolor" action="default">#F34A33</property>'
        "</view></item>"
    )
    items = "".join(view.format(tag=quoteattr(f"CXRXAICompare{i}"), number=i) for i in range(1, views + 1))
    return f'<layout type="horizontal">{items}</layout>'


def score_colour(probability: float, threshold: float) -> tuple[int, int, int]:
    """Row colour of a finding: green well below its threshold, amber near it, red above; the
    threshold, not 0.5, is the midpoint because each finding has its own operating point."""
    if threshold <= 0 or threshold >= 1:
        raise ValueError(f"threshold {threshold} must lie strictly between 0 and 1")
    # 0 at p = 0, 0.5 at the threshold, 1 at p = 1: piecewise linear
    t = (
        probability / threshold * 0.5
        if probability < threshold
        else 0.5 + (probability - threshold) / (1 - threshold) * 0.5
    )
    stops = np.array([[46, 160, 67], [240, 180, 0], [215, 48, 39]], float)  # green, amber, red
    position = np.clip(t, 0.0, 1.0) * 2
    low = int(min(position, 1.0))
    mixed = stops[low] + (stops[low + 1] - stops[low]) * (position - low)
    return tuple(int(round(v)) for v in mixed)  # type: ignore[return-value]


def colour_table() -> np.ndarray:
    """256 x 4 RGBA in [0, 1]: inferno, the colours of our pages and overlays (`cxrxai.colours`, no
    matplotlib: Slicer's Python has none), for a Slicer colour table node (index i shows value i / 255).
    Entry 0 is transparent so zero evidence shows nothing."""
    from cxrxai.colours import INFERNO

    table = np.ones((256, 4))
    table[:, :3] = INFERNO / 255.0
    table[0, 3] = 0.0
    return table


def display_range(threshold: float) -> tuple[float, float]:
    """Values below `threshold` (a fraction of the map's maximum, maps are in [0, 1]) are hidden: the
    lower display threshold; the window always spans [0, 1] so colours mean the same across maps."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold {threshold} must be in [0, 1)")
    return threshold, 1.0


def lung_masked(heatmap: np.ndarray, lungs: np.ndarray | None) -> np.ndarray:
    """The map inside the lung fields only, rescaled so its maximum there is 1 (the lung-masked CAM of
    the multi-output U-Net work); unchanged when there is no lung mask."""
    if lungs is None:
        return heatmap
    if lungs.shape != heatmap.shape:
        raise ValueError(f"lung mask {lungs.shape} and heatmap {heatmap.shape} differ in size")
    masked = np.where(lungs, heatmap, 0.0).astype(np.float32)
    peak = float(masked.max())
    return masked / peak if peak > 0 else masked


def volume_array(plane: np.ndarray) -> np.ndarray:
    """A rows x columns plane as the 1 x rows x columns (K, J, I) array of a Slicer volume, so that
    voxel (i, j, 0) is pixel (row j, column i), as in the radiograph volume Slicer loads."""
    if plane.ndim != 2:
        raise ValueError(f"a radiograph plane has 2 dimensions, not {plane.ndim}")
    return np.ascontiguousarray(plane[None].astype(np.float32 if plane.dtype != bool else np.uint8))


def ijk_to_ras(header) -> np.ndarray:
    """4 x 4 IJK-to-RAS matrix of a projection radiograph as Slicer's DICOM scalar volume loader makes
    it: origin at Image Position (Patient) or 0, axes from Image Orientation (Patient) or the identity
    (in LPS, hence the flipped first two axes), spacing from Pixel Spacing, else Imager Pixel Spacing,
    else 1 mm. The module copies the loaded radiograph volume's geometry onto its maps; without a
    radiograph it uses this matrix of an empty header, the grid Slicer gives an image without geometry."""
    spacing = header.get("PixelSpacing") or header.get("ImagerPixelSpacing") or (1.0, 1.0)
    row_spacing, column_spacing = (float(v) for v in spacing)
    orientation = header.get("ImageOrientationPatient") or (1, 0, 0, 0, 1, 0)
    row_axis, column_axis = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row_axis, column_axis)
    origin = np.array(header.get("ImagePositionPatient") or (0, 0, 0), float)
    lps = np.eye(4)
    lps[:3, 0] = row_axis * column_spacing  # i runs along a row: the column index
    lps[:3, 1] = column_axis * row_spacing
    lps[:3, 2] = normal
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
