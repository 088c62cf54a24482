"""The MONAI bundle: our network is MONAI's U-Net, the bundle runs under `monai.bundle run` with the same
results as our API, TorchScript matches, and altered or unapproved bundles are refused."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cxrxai.cardiothoracic import cardiothoracic_ratio
from cxrxai.errors import BundleError
from cxrxai.explain.engine import Explainer
from cxrxai.io import read_radiograph
from cxrxai.model.bundle import TORCHSCRIPT, load_bundle
from cxrxai.samples import chest_image, radiograph_dataset


def test_level_by_level_forward_is_monai_unet_forward(explainer):
    net = explainer.network
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        _, anatomy = net(x)
        reference = net.segmentation_head(torch.relu(net.unet(x)))  # MONAI's own nested forward
    torch.testing.assert_close(anatomy, reference, rtol=0, atol=0)


@pytest.fixture(params=["average-pooled head", "average- and max-pooled head"])
def either_bundle(request, tiny_bundle, tiny_max_pool_bundle):
    return tiny_bundle if request.param_index == 0 else tiny_max_pool_bundle


def test_torchscript_export_matches(either_bundle):
    scripted = torch.jit.load(str(either_bundle / TORCHSCRIPT))
    network = load_bundle(either_bundle).network
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        ours, theirs = network(x), scripted(x)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_monai_bundle_run_agrees_with_our_api(either_bundle, tmp_path):
    tiny_bundle, explainer = either_bundle, Explainer.from_bundle(either_bundle)
    data = tmp_path / "images"
    data.mkdir()
    for i, (rows, columns) in enumerate([(60, 44), (40, 52)]):
        pixels = (chest_image(rows, columns, seed=i) * 65535).astype(np.uint16)
        Image.fromarray(pixels).save(data / f"img{i}.png")
    # MONOCHROME2 without VOI LUT: the one DICOM case MONAI's reader and ours must read alike
    radiograph_dataset(chest_image(50, 36, seed=5)).save_as(data / "img2.dcm", enforce_file_format=True)
    out = tmp_path / "eval"
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(tiny_bundle / "configs/inference.json"),
        "--meta_file", str(tiny_bundle / "configs/metadata.json"),
        "--bundle_root", str(tiny_bundle),
        "--dataset_dir", str(data),
        "--output_dir", str(out),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    with open(out / "predictions.csv", newline="") as handle:
        rows = {row[0]: [float(v) for v in row[1:]] for row in csv.reader(handle)}
    assert len(rows) == 3
    for path, probabilities in rows.items():
        ours = explainer.predict(read_radiograph(path))
        np.testing.assert_allclose(probabilities, [f.probability for f in ours.findings], atol=1e-5)


def test_max_pool_is_recorded_only_when_set():
    """Bundles written before the max-pooling head existed keep their content hash: the field is absent
    from the hashed metadata unless it is set, and reads back as unset."""
    from cxrxai.model.network import NetworkConfig

    assert "max_pool" not in NetworkConfig().as_dict()
    assert NetworkConfig.from_dict(NetworkConfig().as_dict()) == NetworkConfig()
    with_max = NetworkConfig(max_pool=True)
    assert with_max.as_dict()["max_pool"] is True
    assert NetworkConfig.from_dict(with_max.as_dict()) == with_max


def test_max_pooled_head_reads_the_largest_cell(tiny_max_pool_bundle):
    network = load_bundle(tiny_max_pool_bundle).network
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        skips, bottleneck = network.encode(x)
        features = network.decode_features(bottleneck, skips)
        logits, _ = network(x)
        head = network.head_weights()
        expected = (
            bottleneck.mean(dim=(2, 3)) @ head.bottleneck.T
            + features.mean(dim=(2, 3)) @ head.average.T
            + features.amax(dim=(2, 3)) @ head.maximum.T
            + head.bias
        )
    torch.testing.assert_close(logits, expected)


def test_display_layer_comes_from_the_bundles_own_evaluation(tiny_bundle, tmp_path):
    from cxrxai.model.bundle import EVALUATION, display_layers

    assert load_bundle(tiny_bundle).display_layers == {}  # no evaluation shipped: the fused map
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    scores = {
        "gradcam/fused": {"iou_tuned": {"mean": 0.10}},
        "gradcam/decoder2": {"iou_tuned": {"mean": 0.39}},
        "gradcam+lungmask/decoder1": {"iou_tuned": {"mean": 0.60}},  # another method: not displayed
        "gradcampp/decoder1": {"iou_tuned": {"mean": 0.50}},
        "gradcam/decoder1": {"iou_tuned": {"mean": 0.33}},
    }
    (root / EVALUATION).parent.mkdir(exist_ok=True)
    edema = {
        "gradcam/decoder1": {"iou_tuned": {"mean": 0.7}},
        "gradcam/decoder2": {"iou_tuned": {"mean": 0.3}},
    }
    report = {"localisation": scores, "localisation_by_finding": {"Edema": edema}}
    (root / EVALUATION).write_text(json.dumps(report))
    chosen = load_bundle(root).display_layers  # docs are not hashed: the bundle still loads
    assert chosen["Edema"] == "decoder1"  # its own best
    assert chosen["Fracture"] == "decoder2"  # not evaluated on its own: the best over all findings
    assert len(chosen) == 13 and "No Finding" not in chosen
    (root / EVALUATION).write_text("{not json")
    assert display_layers(root) == {}


def test_shipped_default_leads_with_its_best_grad_cam_layer():
    from cxrxai.model.layout import DEFAULT_BUNDLE

    report = json.loads((DEFAULT_BUNDLE / "docs" / "evaluation.json").read_text())
    chosen = load_bundle(DEFAULT_BUNDLE).display_layers
    for finding, scores in report["localisation_by_finding"].items():
        tuned = {k: v["iou_tuned"]["mean"] for k, v in scores.items() if k.startswith("gradcam/")}
        assert chosen[finding] == max(tuned, key=tuned.get).split("/")[1]


def test_wrong_configured_hash_is_refused(tiny_bundle):
    actual = load_bundle(tiny_bundle).content_hash
    assert load_bundle(tiny_bundle, actual.removeprefix("sha256:")).content_hash == actual
    with pytest.raises(BundleError, match="is not the configured sha256:0000"):
        load_bundle(tiny_bundle, "sha256:" + "0" * 64)


def _copy(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "copy")


def test_altered_weights_are_refused(tiny_bundle, tmp_path):
    root = _copy(tiny_bundle, tmp_path)
    weights = root / "models/model.pt"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match metadata"):
        load_bundle(root)


def test_altered_threshold_is_refused(tiny_bundle, tmp_path):
    root = _copy(tiny_bundle, tmp_path)
    path = root / "configs/metadata.json"
    metadata = json.loads(path.read_text())
    metadata["cxrxai"]["thresholds"]["Pneumothorax"] = 0.01
    path.write_text(json.dumps(metadata))
    with pytest.raises(BundleError, match="bundle altered"):
        load_bundle(root)


def test_not_a_bundle_and_malformed_metadata(tmp_path, tiny_bundle):
    with pytest.raises(BundleError, match="not a MONAI bundle"):
        load_bundle(tmp_path)
    root = _copy(tiny_bundle, tmp_path)
    (root / "configs/metadata.json").write_text("{}")
    with pytest.raises(BundleError, match="malformed cxrxai metadata"):
        load_bundle(root)


def test_cuda_request_without_cuda_is_a_clear_error(tiny_bundle):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BundleError, match="no CUDA device"):
        Explainer.from_bundle(tiny_bundle, device="cuda")


def test_cardiothoracic_ratio():
    lungs = np.zeros((10, 20), bool)
    lungs[2:8, 2:18] = True  # thorax 16 wide
    heart = np.zeros((10, 20), bool)
    heart[5:8, 6:14] = True  # heart 8 wide
    assert cardiothoracic_ratio(heart, lungs) == pytest.approx(0.5)
    assert cardiothoracic_ratio(np.zeros_like(heart), lungs) is None


def test_the_bundle_layout_and_the_default_bundle_are_one_torch_free_definition():
    """The node's config check, the command line and the Slicer module read the layout without torch."""
    import subprocess
    import sys

    from cxrxai.model import bundle, layout

    assert (bundle.METADATA, bundle.WEIGHTS) == (layout.METADATA, layout.WEIGHTS)
    assert layout.is_bundle(layout.DEFAULT_BUNDLE) and not layout.is_bundle(layout.DEFAULT_BUNDLE / "configs")
    code = "import sys, cxrxai.model.layout, dicom_node.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
