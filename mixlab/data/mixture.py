"""Mixture weights: validated and normalised in this one place.

A zero weight keeps its domain in `Mixture.names`, so a domain's id (its index there, carried by
every token) is the same in every arm of an ablation that lists the same domains; only `active`
domains are read.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

from mixlab.data.corpus import DOMAINS


@dataclasses.dataclass(frozen=True)
class Mixture:
    """Domains in config order and their weights, summing to 1 (zeros kept)."""

    names: tuple[str, ...]
    weights: tuple[float, ...]

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the domains with a positive weight: the ones actually sampled."""
        return tuple(n for n, w in zip(self.names, self.weights, strict=True) if w > 0)

    def as_dict(self) -> dict[str, float]:
        """{name: weight}, for logging the resolved shares."""
        return dict(zip(self.names, self.weights, strict=True))


def resolve_mixture(weights: Mapping[str, float] | Any) -> Mixture:
    """Validates and normalises `data.weights`; raises a one-line ValueError naming the culprit.

    Args:
      weights: domain name -> non-negative weight; a mapping or an ml_collections ConfigDict.
        Order is the mapping's order (a ConfigDict iterates in sorted key order).
    """
    items = list(weights.items())
    if not items:
        raise ValueError("data.weights is empty; at least one domain needs a positive weight")
    for name, w in items:
        if name not in DOMAINS:
            raise ValueError(f"data.weights: unknown domain {name!r} (known: {', '.join(DOMAINS)})")
        # bool is an int subclass, but `code: True` is a config mistake, not a weight.
        if isinstance(w, bool) or not isinstance(w, numbers.Real):
            raise ValueError(f"data.weights[{name!r}] = {w!r} is not a number")
        if not math.isfinite(w):
            raise ValueError(f"data.weights[{name!r}] = {w!r} is not finite")
        if w < 0:
            raise ValueError(f"data.weights[{name!r}] = {w!r} is negative")
    total = math.fsum(float(w) for _, w in items)
    if total <= 0:
        raise ValueError("data.weights sum to 0; at least one domain needs a positive weight")
    return Mixture(tuple(n for n, _ in items), tuple(float(w) / total for _, w in items))
