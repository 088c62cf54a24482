"""Explanation engine benchmark: all 14 findings x all layers, Grad-CAM family + CRM, one image.

Ours (one forward, closed forms for the pooled head, one truncated VJP per finding, local exact bottleneck
CRM) against the references used as their documentation shows, on the same model in the same run:
- pytorch-grad-cam: one `cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])` call per layer, target
  and method (GradCAM, GradCAMPlusPlus, HiResCAM);
- monai.visualize: `GradCAM` / `GradCAMpp` called per layer and class;
- CRM by its definition (zero one element, re-run the model), timed on a sample of positions and
  extrapolated where the full grid would take too long.
Maps are compared after the reference's own post-processing is applied to ours. Run with `make bench`
(its own venv: pytorch-grad-cam needs torchvision, which does not load beside torch 2.13).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from cxrxai.explain import crm_formulas as crm
from cxrxai.explain.engine import Explainer, captured_outputs
from cxrxai.labels import FINDINGS
from cxrxai.model.bundle import load_bundle, make_untrained_bundle
from cxrxai.model.network import FindingLogits, NetworkConfig

CAM_METHODS = ("gradcam", "gradcampp", "hirescam")


def timed(function: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, object]:
    """Median wall time over `repeats` runs after one warm-up run."""
    result = function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def machine(device: torch.device) -> str:
    with open("/proc/cpuinfo") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "?")
    text = f"{platform.machine()} {cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--ablation-positions", type=int, default=512, help="positions timed for CRM by definition"
    )
    parser.add_argument("--bundle", default="/tmp/cxrxai-bench-bundle")
    parser.add_argument(
        "--max-pool",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the findings head also max-pools decoder1, as in the default model",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    make_untrained_bundle(args.bundle, NetworkConfig(max_pool=args.max_pool), input_size=args.size, seed=0)
    explainer = Explainer(load_bundle(args.bundle, device=args.device), args.device)
    network = explainer.network
    layers = network.layers()
    targets = list(range(len(FINDINGS)))
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, args.size, args.size, generator=generator).to(device)

    rows: list[tuple[str, float, float | None, str, str]] = []

    # ---------------------------------------------------------------------------------------- ours
    t_cams, ours_cams = timed(lambda: explainer.explain_tensor(x, targets, CAM_METHODS), args.repeats, device)
    t_crm, ours_crm = timed(lambda: explainer.explain_tensor(x, targets, ["crm"]), args.repeats, device)
    t_all, _ = timed(
        lambda: explainer.explain_tensor(x, targets, [*CAM_METHODS, "crm"]), args.repeats, device
    )
    ours = {h.key: h.values for h in ours_cams.heatmaps}
    ours.update({h.key: h.values for h in ours_crm.heatmaps})

    # ----------------------------------------------------------------------------- pytorch-grad-cam
    from pytorch_grad_cam import GradCAM as PGCGradCAM
    from pytorch_grad_cam import GradCAMPlusPlus, HiResCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    wrapper = FindingLogits(network).eval()
    classes = {"gradcam": PGCGradCAM, "gradcampp": GradCAMPlusPlus, "hirescam": HiResCAM}

    def pytorch_grad_cam_loop() -> dict[str, np.ndarray]:
        maps = {}
        for method, cam_class in classes.items():
            for layer, module in layers.items():
                with cam_class(model=wrapper, target_layers=[module]) as cam:
                    for c in targets:
                        maps[f"{method}/{layer}/{FINDINGS[c]}"] = cam(
                            input_tensor=x, targets=[ClassifierOutputTarget(c)]
                        )[0]
        return maps

    t_pgc, theirs = timed(pytorch_grad_cam_loop, 1, device)
    size = (args.size, args.size)

    def agreement(method: str) -> float:
        return max(
            float(
                np.abs(
                    scale_cam_image(scale_cam_image(ours[k][None].astype(np.float32), size)) - theirs[k]
                ).max()
            )
            for k in theirs
            if k.startswith(method + "/")
        )

    eps_check = _gradcampp_with_their_eps(network, x, layers, scale_cam_image, size, theirs)
    differences = (
        f"Grad-CAM {agreement('gradcam'):.1e}, HiResCAM {agreement('hirescam'):.1e}, "
        f"Grad-CAM++ {agreement('gradcampp'):.1e} (theirs adds eps=1e-6 to eq. 19's denominator; "
        f"eq. 19 + their eps on our gradients matches theirs to {eps_check:.1e})"
    )
    rows.append(
        (
            "Grad-CAM + Grad-CAM++ + HiResCAM, 14 findings x 7 layers",
            t_cams,
            t_pgc,
            "pytorch-grad-cam, 294 calls",
            differences,
        )
    )

    # ------------------------------------------------------------------------------ monai.visualize
    from monai.visualize import GradCAM as MonaiGradCAM
    from monai.visualize import GradCAMpp as MonaiGradCAMpp

    names = {id(m): n for n, m in wrapper.named_modules()}
    target_layers = [names[id(m)] for m in layers.values()]
    identity = lambda m: m  # noqa: E731  (MONAI's default normaliser inverts maps)

    def monai_loop() -> dict[str, torch.Tensor]:
        maps = {}
        gradcam = MonaiGradCAM(nn_module=wrapper, target_layers=target_layers, postprocessing=identity)
        gradcampp = MonaiGradCAMpp(nn_module=wrapper, target_layers=target_layers, postprocessing=identity)
        for i, layer in enumerate(layers):
            for c in targets:
                maps[f"gradcam/{layer}/{FINDINGS[c]}"] = gradcam.compute_map(x, class_idx=c, layer_idx=i)[
                    0, 0
                ]
                gradcampp.compute_map(x, class_idx=c, layer_idx=i)
        return maps

    t_monai, monai_maps = timed(monai_loop, 1, device)
    difference = max(
        float(
            (torch.as_tensor(ours[key]) - monai_maps[key].detach().cpu()).abs().max()
            / max(float(monai_maps[key].abs().max()), 1e-12)
        )
        for key in monai_maps
    )
    rows.append(
        (
            "Grad-CAM + Grad-CAM++, 14 findings x 7 layers",
            t_cams,
            t_monai,
            "monai.visualize, 196 calls",
            f"{difference:.1e} (rel.)",
        )
    )

    # ------------------------------------------------------------------------------ CRM by definition
    def ablation_time(layer: str, positions: int) -> tuple[float, int]:
        total = ours[f"crm/{layer}/{FINDINGS[0]}"].size
        chosen = min(positions, total)
        start = time.perf_counter()
        crm.by_ablation(network, x, layers[layer], chunk=64, positions=chosen)
        return (time.perf_counter() - start) * total / chosen, chosen

    t_direct_ours, _ = timed(lambda: _closed_form_only(explainer, x), args.repeats, device)
    t_abl_d, n_d = ablation_time("decoder1", args.ablation_positions)
    t_abl_b, n_b = ablation_time("bottleneck", 10**9)
    agree = _crm_agreement(args.bundle, args.device, x, ours, sample=args.ablation_positions)
    rows.append(
        (
            "CRM decoder1 (closed form), 14 outputs",
            t_direct_ours,
            t_abl_d,
            f"ablation, {n_d} of {args.size**2} positions timed, extrapolated",
            agree["decoder1"],
        )
    )
    rows.append(
        (
            "CRM bottleneck (exact local) + decoder1, 14 outputs",
            t_crm,
            t_abl_b + t_abl_d,
            f"ablation of both layers ({n_b} bottleneck positions timed)",
            agree["bottleneck"],
        )
    )
    rows.append(
        (
            "all of it: CAM family + CRM, 14 findings x all layers",
            t_all,
            None,
            "target < 2 s on 2 CPU cores",
            "",
        )
    )

    print(
        f"\nmachine: {machine(device)}; input {args.size} x {args.size}; default network, "
        f"{'average- and max-pooled' if args.max_pool else 'average-pooled'} head; "
        f"times are medians of {args.repeats} (ours)\n"
    )
    print("| work | ours (s) | reference (s) | reference | speed-up | max map difference |")
    print("|---|---:|---:|---|---:|---|")
    for work, mine, theirs_time, reference, diff in rows:
        ratio = f"{theirs_time / mine:.0f}x" if theirs_time else ""
        theirs_text = f"{theirs_time:.2f}" if theirs_time else ""
        print(f"| {work} | {mine:.3f} | {theirs_text} | {reference} | {ratio} | {diff} |")


def _gradcampp_with_their_eps(network, x, layers, scale_cam_image, size, theirs) -> float:
    """pytorch-grad-cam's Grad-CAM++ formula (eq. 19 + eps 1e-6) on our own activations and gradients."""
    worst = 0.0
    for layer, module in layers.items():
        store: dict[str, torch.Tensor] = {}
        handle = module.register_forward_hook(lambda _m, _i, o, store=store: store.__setitem__("a", o))
        with torch.enable_grad():
            logits, _ = network(x)
            (grad,) = torch.autograd.grad(logits[0, 0], store["a"])
        handle.remove()
        a, g = store["a"][0].detach().cpu().double().numpy(), grad[0].cpu().double().numpy()
        alpha = g**2 / (2 * g**2 + a.sum(axis=(1, 2))[:, None, None] * g**3 + 1e-6)
        alpha = np.where(g != 0, alpha, 0)
        weights = (np.maximum(g, 0) * alpha).sum(axis=(1, 2))
        cam = np.maximum((weights[:, None, None] * a).sum(0), 0)[None].astype(np.float32)
        mine = scale_cam_image(scale_cam_image(cam, size))[0]
        worst = max(worst, float(np.abs(mine - theirs[f"gradcampp/{layer}/{FINDINGS[0]}"]).max()))
    return worst


def _crm_agreement(
    bundle_path: str, device: str, x: torch.Tensor, ours32: dict, sample: int
) -> dict[str, str]:
    """Max relative difference to the definition, in float64 (float32 ablation itself loses digits), on the
    first `sample` positions; and of our float32 maps to the float64 definition."""
    bundle = load_bundle(bundle_path, device=device)
    bundle.network = bundle.network.double().eval()
    explainer = Explainer(bundle, device)
    x64 = x.double()
    ours64 = {h.key: h.values for h in explainer.explain_tensor(x64, list(range(14)), ["crm"]).heatmaps}
    text = {}
    for layer in ("decoder1", "bottleneck"):
        reference = crm.by_ablation(
            bundle.network, x64, bundle.network.layers()[layer], chunk=64, positions=sample
        )
        reference = reference.cpu().numpy()
        scale = float(np.abs(reference).max())
        n = reference.shape[1]

        def stack(maps: dict, layer: str = layer, n: int = n) -> np.ndarray:
            return (
                np.stack([maps[f"crm/{layer}/{f}"] for f in FINDINGS])
                .reshape(14, -1)[:, :n]
                .astype(np.float64)
            )

        text[layer] = (
            f"{np.abs(stack(ours64) - reference).max() / scale:.1e} (rel., float64); "
            f"our float32 {np.abs(stack(ours32) - reference).max() / scale:.1e}"
        )
    return text


def _closed_form_only(explainer: Explainer, x: torch.Tensor) -> torch.Tensor:
    """The decoder1 CRM alone: one forward pass (shared by every method in practice) and one einsum."""
    network = explainer.network
    with torch.no_grad(), captured_outputs({"decoder1": network.layers()["decoder1"]}) as acts:
        logits, _ = network(x)
    head = network.head_weights().detached()
    return crm.closed_form(logits[0], acts["decoder1"][0], head.average, head.maximum)


if __name__ == "__main__":
    main()
