"""Policy interfaces and the registry of built-in policies by name.

A policy is a small object created per run (it may keep its own state, such as a round-robin
counter, but never a clock). Each built-in policy registers itself in its own module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tandem.control.views import DecodeInstanceView, NewRequestView, PrefillInstanceView
from tandem.errors import UnknownNameError


@dataclass(frozen=True, slots=True)
class Migration:
    """Move a running request from one decode instance to another."""

    request_id: int
    source: int
    destination: int


class PrefillDispatchPolicy(ABC):
    """Chooses the prefill instance of an arriving request."""

    @abstractmethod
    def choose(self, request: NewRequestView, instances: Sequence[PrefillInstanceView]) -> int:
        """Index into ``instances`` of the prefill instance that gets ``request``."""


class DecodePlacementPolicy(ABC):
    """Chooses the decode instance of a request whose prefill is done."""

    @abstractmethod
    def choose(self, request: NewRequestView, instances: Sequence[DecodeInstanceView]) -> int:
        """Index into ``instances`` of the decode instance that gets ``request``."""


class DecodeRescheduler(ABC):
    """Looks at the decode fleet periodically and returns migrations to carry out."""

    #: Seconds between calls; ``None`` means never called (the data plane skips the ticks).
    interval_s: float | None = None

    @abstractmethod
    def plan(self, now_s: float, instances: Sequence[DecodeInstanceView]) -> Sequence[Migration]:
        """Migrations to start now; the data plane may abort one whose destination lacks room."""


P = TypeVar("P")
_DISPATCH: dict[str, Callable[[], PrefillDispatchPolicy]] = {}
_PLACEMENT: dict[str, Callable[[], DecodePlacementPolicy]] = {}
_RESCHEDULER: dict[str, Callable[[], DecodeRescheduler]] = {}


def register(
    table: dict[str, Callable[[], P]], name: str
) -> Callable[[Callable[[], P]], Callable[[], P]]:
    """Class decorator: make the policy constructible by ``name``."""

    def wrap(factory: Callable[[], P]) -> Callable[[], P]:
        table[name] = factory
        return factory

    return wrap


def _load_builtins() -> None:
    # Importing the modules registers their policies.
    from tandem.control import ares, dispatch, llumnix, placement, rescheduling  # noqa: F401


def make_dispatch(name: str) -> PrefillDispatchPolicy:
    _load_builtins()
    if name not in _DISPATCH:
        raise UnknownNameError("dispatch policy", name, _DISPATCH)
    return _DISPATCH[name]()


def make_placement(name: str) -> DecodePlacementPolicy:
    _load_builtins()
    if name not in _PLACEMENT:
        raise UnknownNameError("placement policy", name, _PLACEMENT)
    return _PLACEMENT[name]()


def make_rescheduler(name: str) -> DecodeRescheduler:
    _load_builtins()
    if name not in _RESCHEDULER:
        raise UnknownNameError("rescheduler", name, _RESCHEDULER)
    return _RESCHEDULER[name]()


def policy_names() -> dict[str, list[str]]:
    """Registered names by kind."""
    _load_builtins()
    return {
        "dispatch": sorted(_DISPATCH),
        "placement": sorted(_PLACEMENT),
        "rescheduler": sorted(_RESCHEDULER),
    }
