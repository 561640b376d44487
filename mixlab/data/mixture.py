"""Mixture weights over the canonical domain registry: validated and normalised in this one place.

A domain's id is its index in the registry (`corpus.DOMAINS` for the built-in corpus), never its
position in a config dict: an ml_collections ConfigDict iterates in sorted key order, and an arm that
drops a domain must not renumber the others. So `Mixture.names` is always the whole registry, absent
domains with weight 0, and per-domain metrics and routing counts line up across every arm.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from mixlab.data.builtin import corpus


def registry(domains: Sequence[str] | None = None) -> tuple[str, ...]:
    """The canonical domain order: `domains` if given, else the built-in `corpus.DOMAINS`."""
    # Read at call time, not import time: the corpus module owns the list.
    return tuple(corpus.DOMAINS if domains is None else domains)


def check_domain(name: Any, *, what: str, domains: Sequence[str] | None = None) -> str:
    """Returns `name` if it is a known domain; else a ValueError naming it and `what` it came from."""
    known = registry(domains)
    if name not in known:
        raise ValueError(f"{what}: unknown domain {name!r} (known: {', '.join(known)})")
    return name


@dataclasses.dataclass(frozen=True)
class Mixture:
    """Every registry domain, in registry order, with its weight; weights sum to 1 (zeros kept)."""

    names: tuple[str, ...]
    weights: tuple[float, ...]

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the domains with a positive weight: the ones actually read."""
        return tuple(n for n, w in zip(self.names, self.weights, strict=True) if w > 0)

    def as_dict(self) -> dict[str, float]:
        """{name: weight} in registry order, for logging the resolved shares."""
        return dict(zip(self.names, self.weights, strict=True))

    def id(self, name: str) -> int:
        """The domain id every token of `name` carries."""
        return self.names.index(check_domain(name, what="domain id", domains=self.names))


def check_weight(value: Any, *, what: str) -> float:
    """A finite, non-negative number (bools rejected: `code: True` is a mistake, not a weight)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} = {value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{what} = {value!r} is not finite")
    if value < 0:
        raise ValueError(f"{what} = {value!r} is negative")
    return float(value)


def from_masses(masses: Mapping[str, float], *, domains: Sequence[str] | None = None) -> Mixture:
    """Normalises already-validated non-negative masses (missing domains count 0) into a Mixture."""
    names = registry(domains)
    total = math.fsum(masses.get(n, 0.0) for n in names)
    return Mixture(names, tuple(masses.get(n, 0.0) / total for n in names))


def resolve_mixture(
    weights: Mapping[str, float] | Any,
    *,
    domains: Sequence[str] | None = None,
    what: str = "data.weights",
) -> Mixture:
    """Validates and normalises a weight dict; raises a one-line ValueError naming the culprit.

    Args:
      weights: domain name -> non-negative weight; a mapping or an ml_collections ConfigDict. Its
        order does not matter: ids follow the registry.
      domains: the registry (default `corpus.DOMAINS`).
      what: how errors name the weights (e.g. "data.schedule[1] weights").
    """
    items = list(weights.items())
    if not items:
        raise ValueError(f"{what} is empty; at least one domain needs a positive weight")
    masses = {}
    for name, w in items:
        check_domain(name, what=what, domains=domains)
        masses[name] = check_weight(w, what=f"{what}[{name!r}]")
    if math.fsum(masses.values()) <= 0:
        raise ValueError(f"{what} sum to 0; at least one domain needs a positive weight")
    return from_masses(masses, domains=domains)
