"""A small synthetic study for the module's self-test inside Slicer, where no model can run: a chest
radiograph phantom and findings / anatomy / heatmap objects built by the same core writers the node
uses, from values this file states (the heatmaps are blobs over the heart). Test data, labelled as
such in every object (device "cxrxai-selftest"); never shown as a model's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SELFTEST_DEVICE = ("cxrxai-selftest", "0", "sha256:" + "0" * 64)
LAYERS = ("encoder1", "encoder2", "encoder3", "bottleneck", "decoder3", "decoder2", "decoder1", "fused")
CARDIOMEGALY = 0.91  # the one finding above its threshold, with maps


def write_test_study(folder: str | Path) -> dict[str, Path]:
    """Write radiograph, anatomy SEG, layer-map SEG, heat-level SEG and SR into `folder`; returns their
    paths by kind."""
    from cxrxai.dicom.common import Device
    from cxrxai.dicom.outlines import HOT_LEVEL, hot_outline, outlines
    from cxrxai.dicom.result_objects import result_file_name
    from cxrxai.dicom.seg import HeatmapLayer, build_anatomy_seg, build_heatmap_seg, build_layer_maps_seg
    from cxrxai.dicom.sr import FindingOutline, build_sr
    from cxrxai.explanation import FindingPrediction
    from cxrxai.labels import FINDINGS
    from cxrxai.samples import chest_image, radiograph_dataset

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, columns = 128, 112
    source = radiograph_dataset(chest_image(rows, columns, seed=7), uid_seed="cxrxai-slicer-selftest")
    y, x = np.mgrid[0:rows, 0:columns] / np.array([rows, columns])[:, None, None]
    masks = np.stack([
        ((x - 0.30) / 0.17) ** 2 + ((y - 0.45) / 0.32) ** 2 <= 1,  # right lung (image left)
        ((x - 0.70) / 0.17) ** 2 + ((y - 0.45) / 0.32) ** 2 <= 1,  # left lung
        ((x - 0.55) / 0.16) ** 2 + ((y - 0.68) / 0.12) ** 2 <= 1,  # heart
    ])  # fmt: skip
    heatmaps = []
    for depth, layer in enumerate(LAYERS):
        width = 0.06 + 0.03 * min(depth, len(LAYERS) - 1 - depth)  # coarser towards the bottleneck
        blob = np.exp(-(((x - 0.55) ** 2 + (y - 0.68) ** 2) / (2 * width**2)))
        heatmaps.append(
            HeatmapLayer("Cardiomegaly", "gradcam", layer, (blob / blob.max()).astype(np.float32))
        )
    rng = np.random.default_rng(0)
    probabilities = {
        name: float(p) for name, p in zip(FINDINGS, rng.uniform(0.02, 0.3, len(FINDINGS)), strict=True)
    }
    probabilities["Cardiomegaly"] = CARDIOMEGALY
    findings = [FindingPrediction(name, probabilities[name], 0.5) for name in FINDINGS]
    device = Device(*SELFTEST_DEVICE)
    segmentations = [
        build_anatomy_seg(source, masks, device),
        build_layer_maps_seg(source, heatmaps, device),
        build_heatmap_seg(source, heatmaps[:1], device),
    ]
    hot = FindingOutline(hot_outline(heatmaps[0].values), "gradcam", heatmaps[0].layer, HOT_LEVEL)
    anatomy = {
        name: outlines(mask)[0]
        for name, mask in zip(("Right Lung", "Left Lung", "Heart"), masks, strict=True)
    }
    sr = build_sr(source, findings, 0.52, device, {"Cardiomegaly": hot}, anatomy, segmentations=segmentations)
    paths = {"radiograph": folder / "radiograph.dcm"}
    source.save_as(paths["radiograph"], enforce_file_format=True)
    kinds = (("anatomy", segmentations[0]), ("heatmaps", segmentations[1]), ("heat-levels", segmentations[2]))
    for kind, dataset in (*kinds, ("sr", sr)):
        paths[kind] = folder / result_file_name(dataset)
        dataset.save_as(paths[kind], enforce_file_format=True)
    return paths
