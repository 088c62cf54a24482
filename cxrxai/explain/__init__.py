"""Explanation engine: one forward pass, closed forms where the head allows, one truncated VJP per finding.

`Explainer` needs torch; the result types in `cxrxai.results` do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["DEFAULT_METHODS", "METHODS", "Explainer"]

METHODS: tuple[str, ...] = (
    "gradcam",
    "gradcampp",
    "hirescam",
    "crm",
    "seggradcam",
    "saliency",
    "smoothgrad",
    "lime",
    "occlusion",
)
# LIME and occlusion re-run the model hundreds of times per finding: opt-in.
DEFAULT_METHODS: tuple[str, ...] = METHODS[:7]

if TYPE_CHECKING:
    from cxrxai.explain.engine import Explainer


def __getattr__(name: str):  # lazy: importing cxrxai.explain must not import torch
    if name == "Explainer":
        from cxrxai.explain.engine import Explainer

        return Explainer
    raise AttributeError(name)
