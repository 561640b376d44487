"""Weight schedules: `data.schedule = [(start, weights), ...]`, stages that switch at a training step.

A start is a step count (`1200` or `{"steps": 1200}`) or a token count (`{"tokens": 1e6}`, rounded up
to the first step that starts at or after that many tokens, with tokens per step = global batch x
seq_len). The first stage starts at 0 and starts strictly increase once converted to steps, so
every stage has at least one step. Example (Ma et al. 2023's stepwise code schedule):

  c.data.weights = {}   # the stages carry the weights
  c.data.schedule = [(0, {"text": 0.9, "code": 0.1}), ({"tokens": 1e6}, {"text": 0.5, "code": 0.5})]
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

STEP_UNITS = ("steps", "tokens")


def to_step(start: Any, *, tokens_per_step: int, what: str) -> int:
    """A stage start in steps; raises a ValueError naming `what` on anything else."""
    value, unit = start, "steps"
    if hasattr(start, "items"):  # a dict or a ConfigDict (which is no abc.Mapping)
        items = list(start.items())
        if len(items) != 1 or items[0][0] not in STEP_UNITS:
            raise ValueError(f"{what}: start {dict(items)!r} must be a step count or one of {STEP_UNITS}")
        unit, value = items[0]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise ValueError(f"{what}: start {start!r} must be a non-negative number of {unit}")
    if unit == "tokens":
        return -(-int(value) // tokens_per_step)
    if int(value) != value:
        raise ValueError(f"{what}: start {start!r} is not a whole number of steps")
    return int(value)


def parse_schedule(schedule: Any, *, tokens_per_step: int) -> list[tuple[int, Mapping[str, float]]]:
    """`data.schedule` -> [(first step, weights)] with the checks of the module docstring."""
    if isinstance(schedule, str | bytes) or not isinstance(schedule, Sequence) or not schedule:
        raise ValueError(f"data.schedule = {schedule!r} must be a non-empty list of (start, weights) pairs")
    stages = []
    for i, stage in enumerate(schedule):
        what = f"data.schedule[{i}]"
        if isinstance(stage, str | bytes) or not isinstance(stage, Sequence) or len(stage) != 2:
            raise ValueError(f"{what} = {stage!r} must be a (start, weights) pair")
        start, weights = stage
        if not hasattr(weights, "items"):
            raise ValueError(f"{what}: weights {weights!r} must be a dict of domain -> weight")
        step = to_step(start, tokens_per_step=tokens_per_step, what=what)
        if i == 0 and step != 0:
            raise ValueError(f"{what}: the first stage must start at step 0, not {start!r}")
        if stages and step <= stages[-1][0]:
            raise ValueError(
                f"{what}: start {start!r} (step {step}) is not after the previous stage's step "
                f"{stages[-1][0]}; stage starts must increase"
            )
        stages.append((step, weights))
    return stages
