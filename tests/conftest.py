"""Shared fixtures: a tiny randomly initialised bundle (32 px, a few channels) keeps every test fast."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cxrxai.explain.engine import Explainer  # noqa: E402
from cxrxai.model.bundle import load_bundle, make_untrained_bundle  # noqa: E402
from cxrxai.model.network import NetworkConfig  # noqa: E402
from cxrxai.samples import chest_image  # noqa: E402

TINY = NetworkConfig(channels=(4, 8, 16), strides=(2, 2), features=4, num_res_units=1)
TINY_SIZE = 32


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    make_untrained_bundle(root, TINY, input_size=TINY_SIZE, seed=3)
    return root


@pytest.fixture(scope="session")
def explainer(tiny_bundle) -> Explainer:
    return Explainer.from_bundle(tiny_bundle)


@pytest.fixture(scope="session")
def tiny_max_pool_bundle(tmp_path_factory) -> Path:
    """The tiny network with a head that also max-pools decoder1."""
    root = tmp_path_factory.mktemp("bundle-max-pool")
    make_untrained_bundle(root, replace(TINY, max_pool=True), input_size=TINY_SIZE, seed=3)
    return root


@pytest.fixture(params=["average-pooled head", "average- and max-pooled head"])
def explainer64(request, tiny_bundle, tiny_max_pool_bundle) -> Explainer:
    """The tiny model in float64 with batch-norm statistics made non-trivial, for exact comparisons; once
    with each head the engine has closed forms for."""
    bundle = load_bundle(tiny_bundle if request.param_index == 0 else tiny_max_pool_bundle)
    network = bundle.network
    generator = torch.Generator().manual_seed(7)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    bundle.network = copy.deepcopy(network).double().eval()
    return Explainer(bundle)


@pytest.fixture()
def chest_input() -> torch.Tensor:
    """A 1 x 1 x 32 x 32 float64 input with chest-like structure."""
    image = chest_image(TINY_SIZE, TINY_SIZE, seed=1)
    return torch.as_tensor(image, dtype=torch.float64)[None, None]


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
