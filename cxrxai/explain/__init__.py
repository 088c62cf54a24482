"""Explanation engine: one forward pass, closed forms where the head allows, one truncated VJP per finding.

The methods are registered in `cxrxai.explain.registry`, one module each in `cxrxai.explain.methods`.
`Explainer` needs torch; the method list and the result types in `cxrxai.explanation` do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrxai.explain.registry import registered

__all__ = ["DEFAULT_METHODS", "EVALUATED_METHODS", "METHODS", "Explainer"]

METHODS: tuple[str, ...] = tuple(registered())
# LIME and occlusion re-run the model hundreds of times per finding: opt-in.
DEFAULT_METHODS: tuple[str, ...] = tuple(name for name, m in registered().items() if m.default)
# scored by `cxrxai evaluate` and the model card
EVALUATED_METHODS: tuple[str, ...] = tuple(name for name, m in registered().items() if m.evaluated)

if TYPE_CHECKING:
    from cxrxai.explain.engine import Explainer


def __getattr__(name: str):  # lazy: importing cxrxai.explain must not import torch
    if name == "Explainer":
        from cxrxai.explain.engine import Explainer

        return Explainer
    raise AttributeError(name)
