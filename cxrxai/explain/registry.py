"""The explanation methods, one registered `Method` each: what the engine runs, the command line and
3D Slicer offer, and the evaluation scores all come from here.

A method is one module in `cxrxai.explain.methods` that calls `register` at import; `registered()` imports
every module of that package once, so adding a method is one file (plus its test) and no list to edit.
Listing methods needs no torch: a method module imports the model stack inside its `compute` only.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxrxai.explain.forward_pass import ForwardPass, LayerMaps


class Need(StrEnum):
    """What a method asks of the engine's one forward pass, so the engine pays only for what is asked."""

    GRAPH = "graph"  # the forward pass keeps its autograd graph
    LAYER_GRADIENTS = "layer gradients"  # one truncated VJP per finding to every hooked layer
    INPUT_GRADIENT = "input gradient"  # that VJP also reaches the input pixels
    FORWARD_PASSES = "forward passes"  # re-runs the model (tens to hundreds of times per finding)


class Explains(StrEnum):
    FINDINGS = "findings"  # one map per requested finding
    ANATOMY = "anatomy"  # one map per segmented structure


@dataclass(frozen=True)
class Method:
    name: str  # as typed on the command line and stored in the results ("gradcam")
    title: str  # as radiologists know it ("Grad-CAM")
    rank: int  # position in lists and menus: cheap, well-known methods first
    compute: Callable[[ForwardPass], Iterable[LayerMaps]]
    needs: frozenset[Need] = frozenset()
    explains: Explains = Explains.FINDINGS
    default: bool = True  # run unless the user chooses methods
    summary: str = ""

    @property
    def evaluated(self) -> bool:
        """Scored by `cxrxai evaluate` and the model card: finding maps from the single forward pass."""
        return self.explains is Explains.FINDINGS and Need.FORWARD_PASSES not in self.needs


_REGISTERED: dict[str, Method] = {}
_DISCOVERED = False


def register(method: Method) -> Method:
    """Add a method (at its module's import); a second method of the same name is a programming error."""
    if method.name in _REGISTERED and _REGISTERED[method.name] is not method:
        raise ValueError(f"explanation method {method.name!r} is registered twice")
    _REGISTERED[method.name] = method
    return method


def registered() -> dict[str, Method]:
    """Every registered method by name, in rank order."""
    global _DISCOVERED
    if not _DISCOVERED:
        package = importlib.import_module("cxrxai.explain.methods")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
        _DISCOVERED = True
    return dict(sorted(_REGISTERED.items(), key=lambda item: (item[1].rank, item[0])))


def method(name: str) -> Method:
    try:
        return registered()[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from: {', '.join(registered())}") from None


def title(name: str) -> str:
    """The method's display name; a name we do not know (a newer product's results) as it is."""
    found = registered().get(name)
    return found.title if found else name


def check_methods(names: Iterable[str]) -> tuple[str, ...]:
    """The requested method names, normalised and de-duplicated; an unknown one is a ValueError."""
    chosen = tuple(dict.fromkeys(n.strip().lower() for n in names))
    for name in chosen:
        method(name)
    return chosen
