"""Model-randomisation sanity check (Adebayo et al. 2018): maps must depend on the weights.

Cascading randomisation from the head down to the first encoder level; the Spearman rank correlation of
each map with the original must fall well below 1.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from scipy.stats import spearmanr

from cxrxai.explain.engine import Explainer

CASCADE = ["classifier", "segmentation_head", "decoder", "bottleneck", "encoder"]


def _reinitialise(module: torch.nn.Module, generator: torch.Generator) -> None:
    for parameter in module.parameters():
        with torch.no_grad():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.3)


def _rank_correlation(original: np.ndarray, randomised: np.ndarray) -> float:
    """Spearman's rho; a map that randomisation flattened (all zero after the method's ReLU) shares no
    ranking with a map that had one (0), and two flat maps are unchanged (1)."""
    flat = [float(np.ptp(m)) == 0.0 for m in (original, randomised)]
    if any(flat):
        return 1.0 if all(flat) else 0.0
    return float(spearmanr(original.ravel(), randomised.ravel()).statistic)


def test_cascading_randomisation_decorrelates_maps(explainer64, chest_input):
    methods = ["gradcam", "hirescam", "saliency"]
    keys = ["gradcam/decoder1/Cardiomegaly", "gradcam/encoder2/Cardiomegaly", "saliency/input/Cardiomegaly"]
    original = {h.key: h.values for h in explainer64.explain_tensor(chest_input, [2], methods).heatmaps}
    assert all(float(np.ptp(original[key])) > 0 for key in keys)  # else there is nothing to decorrelate
    bundle = copy.copy(explainer64.bundle)
    bundle.network = copy.deepcopy(explainer64.network)
    randomised = Explainer(bundle)
    generator = torch.Generator().manual_seed(11)
    correlations = {}
    for stage in CASCADE:
        _reinitialise(getattr(bundle.network, stage), generator)
        maps = {h.key: h.values for h in randomised.explain_tensor(chest_input, [2], methods).heatmaps}
        correlations[stage] = {key: _rank_correlation(original[key], maps[key]) for key in keys}
    final = correlations["encoder"]
    assert all(np.isfinite(v) and v < 0.5 for v in final.values()), correlations
    # and the decoder1 map already changes once the head is re-initialised
    assert correlations["classifier"]["gradcam/decoder1/Cardiomegaly"] < 0.9, correlations
