"""A run's data plan: config -> stages of final weights (arm applied), token budget, repetition check.

`resolve_plan(config.data, global_batch_size=...)` is shared by the pipeline, the trainer and the
audit, so all three read the config the same way. `data` keys (defaults in DEFAULTS when absent):

  weights       {domain: weight}, normalised; {} when `schedule` is set
  seq_len       tokens per sequence
  schedule      None, or [(start, weights), ...] stages (schedule.py)
  arm           "" (the base arm), or interventions applied to every stage (arms.py)
  max_epochs    a domain may be read at most this many times over within the run's budget
  allow_repeat  True lets a domain go past max_epochs (the audit still reports its epochs)
  mixture_file, tokenizer, strict_utf8   which domains and tokenizer (sources.py); with a mixture
                file its domains are the registry, and its weights are the base unless data.weights
                or data.schedule are given (then they must name the file's domains)

The run's budget is train steps x global batch x seq_len tokens. A sequence reads seq_len + 1 tokens
from its domain's stream (inputs plus the last target), so epochs count seq_len + 1 per sequence.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

from mixlab.data import arms, sources
from mixlab.data.mixture import Mixture, resolve_mixture
from mixlab.data.schedule import parse_schedule

DEFAULTS: dict[str, Any] = {"schedule": None, "arm": "", "max_epochs": 1.0, "allow_repeat": False}


def option(data_cfg: Any, key: str) -> Any:
    """`data_cfg.key`, or its default when the config predates the key."""
    value = data_cfg.get(key, DEFAULTS[key])
    return DEFAULTS[key] if value is None and key != "schedule" else value


@dataclasses.dataclass(frozen=True)
class Stage:
    start_step: int
    mixture: Mixture  # the arm's weights in this stage
    base: Mixture  # the base arm's (no interventions)


@dataclasses.dataclass(frozen=True)
class DataPlan:
    seq_len: int
    global_batch_size: int
    stages: tuple[Stage, ...]
    interventions: tuple[arms.Intervention, ...]
    budget_scale: float  # the arm's tokens / the base's; < 1 only with remove:D:hold
    max_epochs: float
    allow_repeat: bool
    catalog: sources.Catalog = dataclasses.field(compare=False, repr=False)  # documents and tokenizer

    @property
    def names(self) -> tuple[str, ...]:
        """Domain-id order: the registry, the same in every arm."""
        return self.stages[0].mixture.names

    @property
    def mixture(self) -> Mixture:
        """The first stage's weights (the only stage without a schedule)."""
        return self.stages[0].mixture

    @property
    def active(self) -> tuple[str, ...]:
        """Domains read in some stage, in registry order."""
        return tuple(n for n in self.names if any(s.mixture.as_dict()[n] > 0 for s in self.stages))

    @property
    def arm(self) -> str:
        return arms.label(self.interventions)

    def stage_at(self, step: int) -> int:
        """Index of the stage that step `step` (0-based) trains on."""
        return max(i for i, s in enumerate(self.stages) if s.start_step <= step)

    def run_steps(self, base_steps: int) -> int:
        """Steps the arm trains for when the base arm trains `base_steps` (fewer only with hold)."""
        return max(1, round(base_steps * self.budget_scale))

    def sequences(self, steps: int, *, base: bool = False) -> dict[str, float]:
        """Requested sequences per domain over the first `steps` global steps."""
        out = dict.fromkeys(self.names, 0.0)
        ends = [s.start_step for s in self.stages[1:]] + [math.inf]
        for stage, end in zip(self.stages, ends, strict=True):
            n = max(0, min(end, steps) - stage.start_step) * self.global_batch_size
            for name, w in (stage.base if base else stage.mixture).as_dict().items():
                out[name] += n * w
        return out

    def tokens(self, steps: int, *, base: bool = False) -> dict[str, float]:
        """Requested training tokens per domain over the first `steps` global steps."""
        return {n: s * self.seq_len for n, s in self.sequences(steps, base=base).items()}

    def epochs(self, base_steps: int, available: Mapping[str, int]) -> dict[str, float]:
        """Times each read domain is read over within the arm's run (seq_len + 1 tokens a sequence)."""
        seqs = self.sequences(self.run_steps(base_steps))
        return {n: seqs[n] * (self.seq_len + 1) / available[n] for n in self.names if seqs[n] > 0}

    def check_repetition(
        self, base_steps: int, available: Mapping[str, int] | None = None
    ) -> dict[str, float]:
        """Epochs per read domain; ValueError naming each domain past max_epochs unless allow_repeat."""
        if available is None:
            available = {n: self.catalog.available_tokens(n) for n in self.active}
        epochs = self.epochs(base_steps, available)
        over = [n for n, e in epochs.items() if e > self.max_epochs]
        if over and not self.allow_repeat:
            requested = self.sequences(self.run_steps(base_steps))
            detail = "; ".join(
                f"{n!r}: {requested[n] * (self.seq_len + 1):,.0f} tokens requested, {available[n]:,} "
                f"available ({epochs[n]:.2f} epochs)"
                for n in over
            )
            raise ValueError(
                f"data: over data.max_epochs = {self.max_epochs:g} within the run's "
                f"{self.run_steps(base_steps)} steps: {detail}; set data.allow_repeat = True to allow it"
            )
        return epochs


def positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} = {value!r} must be a positive integer")
    return int(value)


def resolve_plan(
    data_cfg: Any, *, global_batch_size: int, domains: tuple[str, ...] | None = None
) -> DataPlan:
    """Validates `data_cfg` (weights or schedule, arm, repetition keys) into a DataPlan.

    Every problem is a one-line ValueError naming the key; the trainer turns it into a ConfigError.
    """
    seq_len = positive_int(data_cfg.seq_len, "data.seq_len")
    global_batch_size = positive_int(global_batch_size, "global batch size")
    catalog = sources.catalog(data_cfg)
    domains = catalog.names if domains is None else domains
    weights, schedule = data_cfg.get("weights"), option(data_cfg, "schedule")
    if catalog.mixture is not None and weights and (unknown := [n for n in weights if n not in domains]):
        raise ValueError(
            f"data.weights names {', '.join(map(repr, unknown))}, not a domain of {catalog.label} "
            f"({', '.join(domains)}); with a mixture file the weights come from the file: set "
            "data.weights = {} (configs/quickstart.py:mixture=FILE does) or name the file's domains"
        )
    if schedule:
        if weights:
            raise ValueError(
                "data.weights and data.schedule are both set; with a schedule set data.weights = {} "
                "(the stages carry the weights)"
            )
        stages = parse_schedule(schedule, tokens_per_step=global_batch_size * seq_len)
        named = [(f"data.schedule[{i}] weights", w) for i, (_, w) in enumerate(stages)]
    elif weights or catalog.weights is None:
        stages, named = [(0, None)], [("data.weights", weights if weights is not None else {})]
    else:
        stages, named = [(0, None)], [(f"{catalog.label} weights", catalog.weights)]
    bases = [resolve_mixture(w, domains=domains, what=what) for what, w in named]
    resolved = arms.resolve_arm(bases, option(data_cfg, "arm"), domains=domains)
    max_epochs = option(data_cfg, "max_epochs")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, numbers.Real) or not max_epochs > 0:
        raise ValueError(f"data.max_epochs = {max_epochs!r} must be a positive number")
    allow_repeat = option(data_cfg, "allow_repeat")
    if not isinstance(allow_repeat, bool):
        raise ValueError(f"data.allow_repeat = {allow_repeat!r} must be True or False")
    return DataPlan(
        seq_len=seq_len,
        global_batch_size=global_batch_size,
        stages=tuple(
            Stage(step, final, base)
            for (step, _), final, base in zip(stages, resolved.mixtures, resolved.base, strict=True)
        ),
        interventions=resolved.interventions,
        budget_scale=resolved.budget_scale,
        max_epochs=float(max_epochs),
        allow_repeat=allow_repeat,
        catalog=catalog,
    )
