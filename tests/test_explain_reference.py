"""Every gradient method equals an independent reference on the same model and layer (float64, 1e-5)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam, NoiseTunnel, Saliency
from monai.visualize import GradCAM
from torch import nn

from cxrxai.anatomy_masks import anatomy_masks
from cxrxai.explain.cams import fused_contributions
from cxrxai.explain.engine import captured_outputs
from cxrxai.labels import FINDINGS
from cxrxai.model.network import FindingLogits

TARGETS = [0, 2, 9, 13]
ATOL = 1e-5


def _maps(explainer, x, methods, targets=TARGETS, require=0.7):
    raw = explainer.explain_tensor(x, targets, methods)
    maps = {h.key: torch.as_tensor(h.values, dtype=torch.float64) for h in raw.heatmaps}
    # Equality of two all-zero maps proves nothing: most maps must carry signal.
    assert sum(float(m.max()) > 0 for m in maps.values()) >= require * len(maps)
    return maps


def _module_names(wrapper: nn.Module) -> dict[int, str]:
    return {id(module): name for name, module in wrapper.named_modules()}


def _close(ours: torch.Tensor, reference: torch.Tensor) -> None:
    scale = max(float(reference.abs().max()), 1e-12)
    assert ours.shape == reference.shape
    assert float((ours - reference).abs().max()) <= ATOL * scale, (ours - reference).abs().max() / scale


def test_gradcam_equals_monai_visualize_at_every_layer(explainer64, chest_input):
    ours = _maps(explainer64, chest_input, ["gradcam"])
    wrapper = FindingLogits(explainer64.network)
    names = _module_names(wrapper)
    layers = explainer64.network.layers()
    reference = GradCAM(
        nn_module=wrapper, target_layers=[names[id(m)] for m in layers.values()], postprocessing=lambda m: m
    )
    for c in TARGETS:
        for layer_index, layer in enumerate(layers):
            theirs = reference.compute_map(chest_input, class_idx=c, layer_idx=layer_index)[0, 0]
            _close(ours[f"gradcam/{layer}/{FINDINGS[c]}"], theirs)
        # MONAI's upsampled output too, with its own bilinear upsampler and no (inverting) normaliser
        upsampled = reference(chest_input, class_idx=c, layer_idx=0)[0, 0]
        mine = torch.nn.functional.interpolate(
            ours[f"gradcam/encoder1/{FINDINGS[c]}"][None, None], size=chest_input.shape[2:], mode="bilinear"
        )[0, 0]
        _close(mine, upsampled)


def test_gradcam_equals_captum_layer_gradcam(explainer64, chest_input):
    ours = _maps(explainer64, chest_input, ["gradcam"])
    wrapper = FindingLogits(explainer64.network)
    for layer, module in explainer64.network.layers().items():
        captum_cam = LayerGradCam(wrapper, module)
        for c in TARGETS:
            theirs = captum_cam.attribute(chest_input, target=c, relu_attributions=True)[0, 0]
            _close(ours[f"gradcam/{layer}/{FINDINGS[c]}"], theirs)


def _activation_and_gradient(network, x, module, target_fn):
    """Reference: a fresh forward and a full .backward() for one layer and one target."""
    store = {}

    def keep(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    handle = module.register_forward_hook(keep)
    network.zero_grad()
    logits, anatomy = network(x)
    handle.remove()
    target_fn(logits, anatomy).backward()
    return store["a"][0].detach(), store["a"].grad[0].detach()


def test_gradcampp_equals_paper_equation_19(explainer64, chest_input):
    ours = _maps(explainer64, chest_input, ["gradcampp"])
    network = explainer64.network
    for layer, module in network.layers().items():
        for c in TARGETS:
            a, g = _activation_and_gradient(network, chest_input, module, lambda lg, _an, c=c: lg[0, c])
            # eq. 19 of Chattopadhay et al. (exp score): alpha_ij^kc = g^2 / (2 g^2 + sum_ab A_ab^k g^3)
            weights = []
            for k in range(a.shape[0]):
                numerator = g[k] ** 2
                denominator = 2 * g[k] ** 2 + a[k].sum() * g[k] ** 3
                alpha = torch.where(denominator != 0, numerator / denominator, torch.zeros_like(numerator))
                weights.append((alpha * torch.relu(g[k])).sum())
            reference = torch.relu(sum(w * a[k] for k, w in enumerate(weights)))
            _close(ours[f"gradcampp/{layer}/{FINDINGS[c]}"], reference)


def test_hirescam_equals_gradient_times_activation(explainer64, chest_input):
    ours = _maps(explainer64, chest_input, ["hirescam"])
    network = explainer64.network
    for layer, module in network.layers().items():
        for c in TARGETS:
            a, g = _activation_and_gradient(network, chest_input, module, lambda lg, _an, c=c: lg[0, c])
            _close(ours[f"hirescam/{layer}/{FINDINGS[c]}"], torch.relu((g * a).sum(0)))


def test_seg_gradcam_equals_captum_on_masked_logit_sum(explainer64, chest_input):
    ours = _maps(explainer64, chest_input, ["seggradcam"], targets=[], require=0)
    network = explainer64.network
    spec = explainer64.bundle.spec
    with torch.no_grad():
        anatomy = torch.sigmoid(network(chest_input)[1])
    # the masks every result uses: thresholded, then post-processed
    masks = torch.as_tensor(anatomy_masks(anatomy[0].numpy(), spec.anatomy, spec.anatomy_threshold))
    compared = 0
    for s, structure in enumerate(spec.anatomy):
        mask = masks[s][None].double()
        if mask.sum() == 0:  # no structure found: the engine returns zero maps
            assert all(float(m.max()) == 0 for k, m in ours.items() if k.endswith(structure))
            continue
        compared += 1

        def masked_sum(x, s=s, mask=mask):
            return (network(x)[1][:, s] * mask).sum(dim=(1, 2))[:, None]

        for layer, module in network.layers().items():
            theirs = LayerGradCam(masked_sum, module).attribute(
                chest_input, target=0, relu_attributions=True
            )[0, 0]
            _close(ours[f"seggradcam/{layer}/{structure}"], theirs)
            assert float(theirs.max()) > 0 or layer != "decoder1"
    assert compared >= 2


def test_saliency_and_smoothgrad_equal_captum(explainer64, chest_input):
    ours = _maps(explainer64, chest_input, ["saliency", "smoothgrad"])
    wrapper = FindingLogits(explainer64.network)
    settings = explainer64.settings
    generator = torch.Generator().manual_seed(settings.seed)
    sigma = settings.smoothgrad_noise * float(chest_input.max() - chest_input.min())
    noise = torch.randn((settings.smoothgrad_samples, 1, 32, 32), generator=generator) * sigma
    saliency = Saliency(wrapper)
    for c in TARGETS:
        theirs = saliency.attribute(chest_input, target=c, abs=True)[0, 0]
        _close(ours[f"saliency/input/{FINDINGS[c]}"], theirs)
        per_sample = [saliency.attribute(chest_input + n[None], target=c, abs=True)[0, 0] for n in noise]
        _close(ours[f"smoothgrad/input/{FINDINGS[c]}"], torch.stack(per_sample).mean(0))
    assert (
        NoiseTunnel
    )  # captum's NoiseTunnel draws its own noise; the loop above is its smoothgrad definition


def test_pooled_layer_closed_forms_equal_autograd(explainer64, chest_input):
    """decoder1 maps come from the head weights with no backward pass; they must equal the VJP path."""
    ours = _maps(explainer64, chest_input, ["gradcam", "gradcampp", "hirescam"])
    network = explainer64.network
    module = network.layers()["decoder1"]
    from cxrxai.explain.cams import FORMULAS

    for c in TARGETS:
        a, g = _activation_and_gradient(network, chest_input, module, lambda lg, _an, c=c: lg[0, c])
        for method, formula in FORMULAS.items():
            _close(ours[f"{method}/decoder1/{FINDINGS[c]}"], formula(a, g[None])[0])


def test_fused_map_adds_up_to_logit_minus_bias(explainer64, chest_input):
    network = explainer64.network
    layers = network.layers()
    wanted = {name: layers[name] for name in ("bottleneck", "decoder1")}
    with torch.no_grad(), captured_outputs(wanted) as acts:
        logits, _ = network(chest_input)
    head = network.head_weights().detached()
    fused = fused_contributions(acts["bottleneck"][0], acts["decoder1"][0], head)
    assert fused.shape == (14, 32, 32)
    torch.testing.assert_close(fused.sum(dim=(1, 2)), logits[0] - head.bias, rtol=1e-10, atol=1e-10)


def test_max_pooled_head_routes_its_gradient_to_one_cell_per_channel(explainer64, chest_input):
    """With a max-pooling head, decoder1's gradient is no longer flat, so Grad-CAM (channel weights) and
    HiResCAM (cell by cell) part; with the average alone they are the same map."""
    maps = _maps(explainer64, chest_input, ["gradcam", "hirescam"])
    differ = [
        float((maps[f"gradcam/decoder1/{f}"] - maps[f"hirescam/decoder1/{f}"]).abs().max()) > 1e-6
        for f in (FINDINGS[c] for c in TARGETS)
    ]
    assert all(differ) if explainer64.network.max_pool else not any(differ)


@pytest.mark.parametrize("method", ["lime"])
def test_perturbation_methods_give_maps(explainer, method):
    torch.manual_seed(0)
    x = torch.rand(1, 1, 32, 32)
    explainer.settings.lime_samples = 24
    raw = explainer.explain_tensor(x, [2], [method])
    (heatmap,) = raw.heatmaps
    assert heatmap.key == f"{method}/input/Cardiomegaly"
    assert heatmap.values.shape == (32, 32) and (heatmap.values >= 0).all()
