"""Declarative ablation arms: a base mixture plus interventions applied in order, at a fixed budget.

Config form, `data.arm`: a string or a list of strings; `+` also joins several in one string (so an
arm fits in one `--config.data.arm=...` flag). "", "base" and "full" mean no intervention.

  remove:D[:proportional]  D's share goes to the others in proportion to their shares (the paper's
                           policy; note it *adds* tokens to every other domain, math included:
                           the confound `remove:D:fill:X` and `:keep:X` undo)
  remove:D:fill:X          D's share goes to X only, every other domain keeps its tokens (de-confounded)
  remove:D:keep:X          D's share goes to the others in proportion, except X, which keeps its tokens
                           (de-confounded: remove:code:keep:math holds math fixed)
  remove:D:hold            every other domain keeps its absolute tokens and the total shrinks by D's
                           share: the only intervention that changes the budget (`budget_scale` < 1,
                           so the run has fewer steps; the audit reports it)
  replace:S:D              D takes exactly S's tokens (the scaffold arm: replace:math:math_traces keeps
                           the math budget). D must have no weight yet: to merge S into a weighted D
                           say remove:S:fill:D, which means exactly that
  add:D:SHARE              D gets SHARE (0 < SHARE < 1) of the total, the others shrink in proportion.
                           D must have no weight yet: to change a present domain's share, edit the base

Bookkeeping is in token masses, fractions of the base run's budget (the base weights sum to 1): every
intervention but hold keeps the total at 1. A remove or replace of a domain that has no weight in a
schedule stage does nothing there; it is an error only when the domain has no weight in every stage
(`resolve_arm` checks; a typo then fails loudly instead of giving the base arm under another name).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from mixlab.data.mixture import Mixture, check_domain, from_masses, registry, resolve_mixture

RENORMS = ("proportional", "fill:<domain>", "keep:<domain>", "hold")
_BASE_NAMES = ("", "base", "full")


@dataclasses.dataclass(frozen=True)
class Remove:
    """Drop `domain`; `renorm` is "proportional", "fill:<domain>" or "hold"."""

    domain: str
    renorm: str = "proportional"

    def __str__(self) -> str:
        return f"remove:{self.domain}:{self.renorm}"

    @property
    def fill(self) -> str | None:
        return self.renorm[len("fill:") :] if self.renorm.startswith("fill:") else None

    @property
    def keep(self) -> str | None:
        return self.renorm[len("keep:") :] if self.renorm.startswith("keep:") else None


@dataclasses.dataclass(frozen=True)
class Replace:
    """`dst` takes exactly `src`'s tokens; `src` goes to 0."""

    src: str
    dst: str

    def __str__(self) -> str:
        return f"replace:{self.src}:{self.dst}"


@dataclasses.dataclass(frozen=True)
class Add:
    """`domain` gets `share` of the total; the others are scaled down proportionally."""

    domain: str
    share: float

    def __str__(self) -> str:
        return f"add:{self.domain}:{self.share:g}"


Intervention = Remove | Replace | Add


def label(interventions: Sequence[Intervention]) -> str:
    """Canonical name of an arm: its interventions joined by "+", or "base"."""
    return "+".join(str(i) for i in interventions) or "base"


def _parse_one(text: str, domains: Sequence[str] | None) -> Intervention:
    what = f"data.arm {text!r}"
    kind, _, rest = text.partition(":")
    parts = rest.split(":") if rest else []
    if kind == "remove" and len(parts) in (1, 2, 3):
        renorm = ":".join(parts[1:]) or "proportional"
        if renorm.startswith(("fill:", "keep:")) and len(parts) == 3:
            check_domain(parts[2], what=f"{what} {parts[1]} target", domains=domains)
            if parts[2] == parts[0]:
                raise ValueError(f"{what}: cannot {parts[1]} the removed domain itself")
        elif renorm not in ("proportional", "hold"):
            raise ValueError(f"{what}: unknown renorm {renorm!r} (known: {', '.join(RENORMS)})")
        iv: Intervention = Remove(parts[0], renorm)
    elif kind == "replace" and len(parts) == 2:
        if parts[0] == parts[1]:
            raise ValueError(f"{what}: replaces a domain with itself")
        check_domain(parts[1], what=what, domains=domains)
        iv = Replace(parts[0], parts[1])
    elif kind == "add" and len(parts) == 2:
        try:
            share = float(parts[1])
        except ValueError:
            raise ValueError(f"{what}: share {parts[1]!r} is not a number") from None
        if not 0 < share < 1:
            raise ValueError(f"{what}: share {share:g} must be strictly between 0 and 1")
        iv = Add(parts[0], share)
    else:
        raise ValueError(
            f"{what}: expected remove:D[:proportional|:hold|:fill:X|:keep:X], replace:SRC:DST or add:D:SHARE"
        )
    check_domain(parts[0], what=what, domains=domains)
    return iv


def parse_arm(
    spec: str | Intervention | Sequence[str | Intervention] | None, *, domains: Sequence[str] | None = None
) -> tuple[Intervention, ...]:
    """Parses `data.arm` (a string, a list of strings or Intervention objects) into interventions."""
    if spec is None or isinstance(spec, Remove | Replace | Add):
        items: list[Any] = [] if spec is None else [spec]
    elif isinstance(spec, str):
        items = [spec]
    else:
        items = list(spec)
    out = []
    for item in items:
        if isinstance(item, Remove | Replace | Add):
            out.append(_parse_one(str(item), domains))  # validates the Python API the same way
        elif isinstance(item, str):
            pieces = [p.strip() for p in item.split("+")]
            out += [_parse_one(p, domains) for p in pieces if p not in _BASE_NAMES]
        else:
            raise ValueError(f"data.arm: {item!r} is not a string")
    return tuple(out)


def apply(masses: Mapping[str, float], iv: Intervention) -> dict[str, float] | None:
    """One intervention on token masses; None when its source domain has no tokens to move."""
    m = dict(masses)
    src = iv.src if isinstance(iv, Replace) else iv.domain
    held = m.get(src, 0.0)
    if isinstance(iv, Add):
        if held > 0:
            raise ValueError(
                f"data.arm {str(iv)!r}: {src!r} already has weight; add gives a new domain a share "
                "(to change a present domain's share, edit the base weights)"
            )
        total = math.fsum(m.values())
        m = {n: v * (1 - iv.share) for n, v in m.items()}
        m[src] = iv.share * total
        return m
    if held <= 0:
        return None
    m[src] = 0.0
    rest = math.fsum(m.values())
    if isinstance(iv, Replace):
        if m.get(iv.dst, 0.0) > 0:
            raise ValueError(
                f"data.arm {str(iv)!r}: {iv.dst!r} already has weight; replace moves {src!r}'s tokens "
                f"into an empty domain (to merge them say remove:{src}:fill:{iv.dst})"
            )
        m[iv.dst] = held
    elif iv.fill is not None:
        m[iv.fill] = m.get(iv.fill, 0.0) + held
    elif iv.keep is not None:
        others = math.fsum(v for n, v in m.items() if n != iv.keep)
        if others <= 0:
            raise ValueError(
                f"data.arm {str(iv)!r}: no domain but {iv.keep!r} is left to take {src!r}'s share"
            )
        m = {n: v if n == iv.keep else v * (others + held) / others for n, v in m.items()}
    elif rest <= 0:
        raise ValueError(f"data.arm {str(iv)!r}: removing {src!r} leaves no domain with weight")
    elif iv.renorm == "proportional":
        m = {n: v * (rest + held) / rest for n, v in m.items()}
    return m  # hold: the total shrinks by `held`


@dataclasses.dataclass(frozen=True)
class ArmResult:
    """An arm resolved against base weights (one stage per entry when there is a schedule)."""

    interventions: tuple[Intervention, ...]
    base: tuple[Mixture, ...]
    mixtures: tuple[Mixture, ...]
    budget_scale: float  # the arm's total tokens / the base's; < 1 only with hold

    @property
    def mixture(self) -> Mixture:
        """The first (for a plain mixture: the only) stage's final weights."""
        return self.mixtures[0]

    @property
    def label(self) -> str:
        return label(self.interventions)


def resolve_arm(
    stages: Sequence[Mapping[str, float] | Mixture] | Mapping[str, float] | Mixture,
    arm: str | Intervention | Sequence[str | Intervention] | None,
    *,
    domains: Sequence[str] | None = None,
) -> ArmResult:
    """Applies an arm to base weights (a mapping, a Mixture, or a list of them: schedule stages).

    Example: `resolve_arm({"text": .5, "code": .3, "math": .2}, "remove:code").mixture`
    gives text 5/7, math 2/7.
    """
    if isinstance(stages, Mixture | Mapping):
        stages = [stages]
    names = registry(domains)
    base = [s if isinstance(s, Mixture) else resolve_mixture(s, domains=names) for s in stages]
    interventions = parse_arm(arm, domains=names)
    finals, scales, moved = [], [], [False] * len(interventions)
    for mixture in base:
        masses = mixture.as_dict()
        for i, iv in enumerate(interventions):
            out = apply(masses, iv)
            moved[i] = moved[i] or out is not None
            masses = masses if out is None else out
        scales.append(math.fsum(masses.values()))
        finals.append(from_masses(masses, domains=names))
    for iv, did in zip(interventions, moved, strict=True):
        if not did:
            src = iv.src if isinstance(iv, Replace) else iv.domain
            raise ValueError(f"data.arm {str(iv)!r}: {src!r} has no weight in the base mixture")
    if len(base) > 1 and any(not math.isclose(s, 1.0) for s in scales):
        # Each stage would shrink by its own factor and the stage boundaries would move.
        raise ValueError(f"data.arm {label(interventions)!r}: hold changes the budget; not with a schedule")
    return ArmResult(interventions, tuple(base), tuple(finals), scales[0])
