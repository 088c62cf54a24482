"""The explanation-method registry: one module per method, found without a list to edit, read by the
engine, the command line, 3D Slicer's display and the evaluation; the engine pays only for what the
requested methods declare they need."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from cxrxai.explain import DEFAULT_METHODS, EVALUATED_METHODS, METHODS, registry
from cxrxai.explain.forward_pass import ForwardPass, LayerMaps
from cxrxai.explain.registry import Explains, Method, Need


def test_every_method_module_registers_one_method_in_rank_order():
    from pathlib import Path

    import cxrxai.explain.methods as package

    modules = sorted(p.stem for p in Path(package.__path__[0]).glob("*.py") if p.stem != "__init__")
    assert sorted(METHODS) == modules
    ranks = [registry.method(name).rank for name in METHODS]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    assert set(EVALUATED_METHODS) <= set(DEFAULT_METHODS) <= set(METHODS)
    assert registry.method("seggradcam").explains is Explains.ANATOMY
    with pytest.raises(ValueError, match="unknown method 'nope'; choose from: gradcam"):
        registry.check_methods(["GradCAM", "nope"])


def test_listing_the_methods_loads_no_model_stack():
    """3D Slicer's display and the command line's help list the methods without torch."""
    code = (
        "import sys; from cxrxai.explain import METHODS, registry; "
        "assert len(METHODS) == 9 and registry.title('gradcampp') == 'Grad-CAM++'; "
        "assert not {'torch', 'monai', 'captum'} & set(sys.modules), 'model stack imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.fixture()
def edge_method(monkeypatch):
    """A method defined here, as a new module would define it: the input's horizontal edges, per finding."""
    calls: list[ForwardPass] = []

    def compute(run: ForwardPass) -> list[LayerMaps]:
        calls.append(run)
        edges = (run.x.detach()[0, 0, :, 1:] - run.x.detach()[0, 0, :, :-1]).abs()
        maps = torch.nn.functional.pad(edges, (0, 1)).expand(len(run.targets), -1, -1)
        return [LayerMaps("input", maps, run.names, "horizontal edges")]

    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    registry.register(Method("edges", "Edges", rank=95, compute=compute, default=False))
    return calls


def test_a_registered_method_reaches_the_engine_the_command_line_and_the_display(
    edge_method, explainer, tmp_path, capsys
):
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    raw = explainer.explain_tensor(x, [2, 3], ["edges"])
    assert [h.key for h in raw.heatmaps] == ["edges/input/Cardiomegaly", "edges/input/Lung Opacity"]
    expected = (x[0, 0, :, 1:] - x[0, 0, :, :-1]).abs()
    assert torch.allclose(torch.as_tensor(raw.heatmaps[0].values[:, :-1]), expected)
    (run,) = edge_method
    assert not run.x.requires_grad and not run.logits.requires_grad  # it declared no need of the graph

    from CXRXAILib import display

    assert display.method_name("edges") == "Edges"
    assert display.sorted_methods(["edges", "occlusion", "gradcam"]) == ["gradcam", "occlusion", "edges"]

    from cxrxai.cli import build_parser

    args = build_parser().parse_args(["explain", "x.dcm", "--out", str(tmp_path), "--methods", "edges"])
    assert registry.check_methods(args.methods) == ("edges",)


def test_the_engine_keeps_the_graph_and_computes_gradients_only_when_asked(explainer):
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    seen: dict[str, ForwardPass] = {}
    for name in ("crm", "saliency", "gradcam"):
        original = registry.method(name)

        def spy(run: ForwardPass, original=original, name=name):
            seen[name] = run
            return original.compute(run)

        registry._REGISTERED[name] = Method(**{**original.__dict__, "compute": spy})
        try:
            explainer.explain_tensor(x, [2], [name])
        finally:
            registry._REGISTERED[name] = original
    assert not seen["crm"].logits.requires_grad  # closed form and partial forward passes: no graph
    assert seen["saliency"].input_gradient and not seen["saliency"].layer_gradient
    assert seen["gradcam"].layer_gradient and not seen["gradcam"].input_gradient
    with pytest.raises(RuntimeError, match="Need.INPUT_GRADIENT"):
        seen["gradcam"].input_gradients()
    assert Need.GRAPH in registry.method("seggradcam").needs


def test_explain_only_maps_the_findings_named_after_the_predictions(explainer):
    """The node maps only the findings its objects show: `explain_only` sees every prediction, and the
    maps it keeps equal those of the full explanation."""
    from cxrxai.io import read_radiograph
    from cxrxai.samples import chest_image, radiograph_dataset

    radiograph = read_radiograph(radiograph_dataset(chest_image(96, 80, seed=2), uid_seed="only"))
    full = explainer.explain(radiograph, methods=["gradcam", "saliency"])
    seen = []

    def top_two(predictions):
        seen.extend(predictions)
        return [p.name for p in sorted(predictions, key=lambda p: p.probability, reverse=True)[:2]]

    narrow = explainer.explain(radiograph, methods=["gradcam", "saliency"], explain_only=top_two)
    assert [p.name for p in seen] == [f.name for f in full.findings]
    assert [f.probability for f in narrow.findings] == [f.probability for f in full.findings]
    chosen = set(top_two(full.findings))
    assert {h.target for h in narrow.heatmaps.values()} == chosen
    assert set(narrow.heatmaps) == {key for key, h in full.heatmaps.items() if h.target in chosen}
    for key, heatmap in narrow.heatmaps.items():
        np.testing.assert_allclose(heatmap.values, full.heatmaps[key].values, rtol=1e-5, atol=1e-6)
    nothing = explainer.explain(radiograph, methods=["gradcam"], explain_only=lambda predictions: [])
    assert not nothing.heatmaps and nothing.ctr == full.ctr
