"""Destination kinds: how the outbox delivers to one kind of destination, behind one interface.

A kind is a `DestinationKind` subclass, decorated with `@register`, in a module of this package. The
registry (`kinds()`) imports every module of the package (pkgutil) the first time it is asked, so adding a
kind is one new file and its test: no list to extend, no branch to add in the sender or the configuration.
Discovery is lazy so that `dicom_node.config`, which validates destinations through the registry, stays
light to import and below the kinds (which import the DICOM and HTTP libraries).

What is shared:
- `Destination`: one `[[destinations]]` entry of node.toml, whatever its kind (`dicom_node.config` reads
  and validates it; each kind checks its own fields).
- `Delivery` (`dicom_node.state`): one outbox row, naming its destination and kind.
- `Outcome`: where a kind reports each delivery as sent or failed; the sender owns retries,
  dead-lettering, metrics and the audit log.
"""

from __future__ import annotations

import importlib
import pkgutil
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from dicom_node.state import Delivery

__all__ = [
    "Carries",
    "Destination",
    "DestinationKind",
    "Kind",
    "Outcome",
    "Sending",
    "carrying",
    "kinds",
    "register",
]


class Kind(StrEnum):
    """The kinds that ship with the node, by name: what node.toml infers when `kind` is left out, and what
    `[triage] webhook_url` stands for. The registry, not this enum, is the full set, so a new kind needs
    no member here."""

    DICOM = "dicom"
    FOLDER = "folder"
    WEBHOOK = "webhook"


class Carries(StrEnum):
    """What a kind's destinations receive."""

    OBJECTS = "objects"  # every result object (SR, SEG, SC, GSPS files)
    NOTIFICATION = "notification"  # the triage notification (JSON) of urgent studies


@dataclass(frozen=True)
class Destination:
    """One `[[destinations]]` entry. Without `kind`, a `folder` makes it a folder, else it is a DICOM
    peer, so configurations written before kinds keep working."""

    name: str
    ae_title: str = ""
    host: str = ""
    port: int = 0
    tls: bool = False
    folder: Path | None = None  # folder: where result objects are copied
    # the transfer syntax this destination gets SEG and pictures in (cxrxai.dicom.encoding); empty: as
    # `processing.transfer_syntax` wrote them
    transfer_syntax: str = ""
    kind: str = ""  # a name in kinds(); empty: inferred as above
    url: str = ""  # webhook: where the triage notification is POSTed

    def __post_init__(self) -> None:
        kind = self.kind or (Kind.FOLDER if self.folder is not None else Kind.DICOM)
        object.__setattr__(self, "kind", str(kind))  # a plain string, as read from node.toml


class Outcome(Protocol):
    """Where a kind reports each delivery it was given, exactly once."""

    def sent(self, delivery: Delivery) -> None: ...

    def failed(self, delivery: Delivery, error: str) -> None: ...


@dataclass(frozen=True)
class Sending:
    """What the sending node lends a kind: its AE title (the calling AE title of DICOM associations) and
    its TLS client context, made when a destination asks for TLS."""

    ae_title: str
    client_tls: Callable[[], ssl.SSLContext]


class DestinationKind(ABC):
    """One kind of destination. Implementations are stateless; the registry holds one instance each."""

    name: ClassVar[str]  # the `kind` in node.toml and in the outbox
    carries: ClassVar[Carries]

    @abstractmethod
    def check(self, destination: Destination) -> list[str]:
        """Problems with this destination's own fields, each `<key>: what is wrong, what to do`; the
        configuration prefixes them with where the destination is."""

    @abstractmethod
    def deliver(
        self, destination: Destination, deliveries: list[Delivery], sending: Sending, outcome: Outcome
    ) -> None:
        """Attempt each of these due deliveries to `destination` once and report each through `outcome`.
        A failure of one object is reported on its delivery and the others go on; the sender fails any
        delivery left unreported (with the exception, if this raised) and schedules its retry."""


K = TypeVar("K", bound=type[DestinationKind])
_REGISTERED: dict[str, DestinationKind] = {}


def register(cls: K) -> K:
    """Class decorator: make `cls` the kind called `cls.name`."""
    known = _REGISTERED.get(cls.name)
    if known is not None and type(known) is not cls:
        raise ValueError(f"two destination kinds are called {cls.name!r} ({type(known)}, {cls}): rename one")
    _REGISTERED[str(cls.name)] = cls()
    return cls


def kinds() -> Mapping[str, DestinationKind]:
    """Every registered kind by name, the modules of this package imported first."""
    _import_kinds()
    return MappingProxyType(_REGISTERED)


@cache
def _import_kinds() -> None:
    for module in pkgutil.iter_modules(__path__, f"{__name__}."):
        importlib.import_module(module.name)


def carrying(destinations: Iterable[Destination], what: Carries) -> list[Destination]:
    """The destinations whose kind receives `what` (their kinds validated by the configuration)."""
    registered = kinds()
    return [d for d in destinations if registered[d.kind].carries is what]
