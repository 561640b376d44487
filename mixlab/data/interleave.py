"""A deterministic, token-exact global interleave of domains, with weights that change by stage.

Why not `grain.IterDataset.mix`: its rounding is fine (integer proportions, smallest weight -> 100;
measured worst 1,000-sequence window 2.6 sequences = 0.26 pp off over 13 weight vectors of 2-6
domains), but it cannot switch weights at a given step (`data.schedule`), and mixing per process
(each process mixing its own shards) makes the global batch P copies of a per-process pattern, whose
1,000-sequence windows drift by up to P times the per-process rounding. Here the pattern is global.

The rule: sequence n of a stage goes to the domain furthest behind its quota, argmax_d of
(n + 1) * q_d - c_d * DENOMINATOR, ties to the lowest registry id, where q_d is the domain's weight as
an integer out of DENOMINATOR (largest remainder, so quotas sum exactly) and c_d its count so far in
the stage. Integer arithmetic makes the pattern identical on every machine. Every prefix of a stage
stays within about one sequence of n * w_d per domain; over 150 random weight vectors of 2-8 domains
the worst 1,000-sequence window was 1.7 sequences off (0.17 pp; tests/data/interleave_test.py checks
< 0.5 pp). A stage restarts the pattern at its first step, so each stage is exact on its own.

The elements are (domain, window index) pairs; the pipeline fetches the window (packing.py gives
random access). The state is a few integers per domain (step, row, counts in the stage, windows read):
plain JSON for Orbax, and the restored iterator recomputes the step's pattern from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grain

DENOMINATOR = 2**32


def quotas(weights: Sequence[float]) -> tuple[int, ...]:
    """Weights (non-negative, summing to ~1) as integers out of DENOMINATOR that sum to it exactly."""
    total = sum(weights)
    exact = [w / total * DENOMINATOR for w in weights]
    q = [int(x) for x in exact]
    # Largest remainder first; a zero weight stays exactly zero.
    by_remainder = sorted((i for i in range(len(q)) if exact[i] > 0), key=lambda i: (q[i] - exact[i], i))
    for i in by_remainder[: DENOMINATOR - sum(q)]:
        q[i] += 1
    return tuple(q)


def next_domain(quota: Sequence[int], counts: Sequence[int], n: int) -> int:
    """The domain of sequence n of a stage given the counts of the n before it (see the module doc)."""
    best, best_deficit = -1, None
    for d, q in enumerate(quota):
        if q:
            deficit = (n + 1) * q - counts[d] * DENOMINATOR
            if best_deficit is None or deficit > best_deficit:
                best, best_deficit = d, deficit
    return best


def pattern(weights: Sequence[float], length: int) -> list[int]:
    """The first `length` domain indices of a stage with these weights (what the tests check)."""
    q, counts, out = quotas(weights), [0] * len(weights), []
    for n in range(length):
        d = next_domain(q, counts, n)
        counts[d] += 1
        out.append(d)
    return out


class ScheduledMix(grain.IterDataset):
    """This process's rows of the global interleave, as (domain index, window index) pairs.

    Every process computes the whole global pattern of each step (global batch = batch_size x
    shard_count positions, a few microseconds each) and keeps rows [p * batch_size, (p + 1) *
    batch_size): the block `jax.make_array_from_process_local_data` puts there. The window index is
    the domain's count over all earlier global positions, so P processes together read exactly
    the sequences, in exactly the rows, of one process with the P-times larger batch.

    Args:
      names: domains in registry order (the tie-break order); element [0] indexes this tuple.
      stages: (first step, {name: weight}) with increasing first steps, the first at 0; names absent
        from a stage's dict have weight 0 there.
      batch_size: rows per step on this process.
      shard_index, shard_count: this process and the number of processes.
    """

    def __init__(
        self,
        names: Sequence[str],
        stages: Sequence[tuple[int, Mapping[str, float]]],
        *,
        batch_size: int,
        shard_index: int = 0,
        shard_count: int = 1,
    ):
        super().__init__()
        self._names = tuple(names)
        for step, weights in stages:
            if unknown := {n for n, w in weights.items() if w > 0} - set(self._names):
                raise ValueError(f"stage at step {step}: unknown domains {sorted(unknown)}")
        self._stages = tuple((step, quotas([w.get(n, 0.0) for n in self._names])) for step, w in stages)
        if not self._stages or self._stages[0][0] != 0:
            raise ValueError("the first stage must start at step 0")
        if not 0 <= shard_index < shard_count:
            raise ValueError(f"shard_index={shard_index} is outside [0, shard_count={shard_count})")
        self._rows, self._shard = batch_size, (shard_index, shard_count)

    def __iter__(self) -> _ScheduledMixIterator:
        return _ScheduledMixIterator(self._names, self._stages, self._rows, *self._shard)

    def __str__(self) -> str:
        return f"ScheduledMix({list(self._names)}, {len(self._stages)} stages)"


class _ScheduledMixIterator(grain.DatasetIterator):
    """State at the start of `step`: counts in the step's stage and windows read before it, global."""

    def __init__(self, names: tuple[str, ...], stages: tuple, rows: int, shard_index: int, shard_count: int):
        super().__init__()
        self._names, self._stages, self._rows = names, stages, rows
        self._first, self._width = shard_index * rows, shard_count * rows  # my rows; global batch
        self._step, self._row = 0, 0
        self._counts, self._totals = [0] * len(names), [0] * len(names)
        self._block: list[tuple[int, int]] | None = None
        self._next: tuple[list[int], list[int]] = ([], [])  # counts, totals at the next step's start

    def _stage(self, step: int) -> int:
        return max(i for i, (start, _) in enumerate(self._stages) if start <= step)

    def _compute_block(self) -> None:
        start, quota = self._stages[self._stage(self._step)]
        counts, totals, block = list(self._counts), list(self._totals), []
        for n in range((self._step - start) * self._width, (self._step - start + 1) * self._width):
            d = next_domain(quota, counts, n)
            block.append((d, totals[d]))
            counts[d] += 1
            totals[d] += 1
        self._block = block[self._first : self._first + self._rows]
        next_is_new_stage = self._stage(self._step + 1) != self._stage(self._step)
        self._next = ([0] * len(counts) if next_is_new_stage else counts), totals

    def __next__(self) -> tuple[int, int]:
        if self._block is None:
            self._compute_block()
        element = self._block[self._row]
        self._row += 1
        if self._row == self._rows:
            self._step, self._row, self._block = self._step + 1, 0, None
            self._counts, self._totals = self._next
        return element

    def get_state(self) -> dict[str, Any]:
        start, quota = self._stages[self._stage(self._step)]
        return {
            "step": self._step,
            "row": self._row,
            "stage_start": start,
            "quotas": dict(zip(self._names, quota, strict=True)),
            "counts": dict(zip(self._names, self._counts, strict=True)),
            "windows_read": dict(zip(self._names, self._totals, strict=True)),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        step = state["step"]
        start, quota = self._stages[self._stage(step)]
        saved = {n: q for n, q in state["quotas"].items() if q}
        if state["stage_start"] != start or saved != {
            n: q for n, q in zip(self._names, quota, strict=True) if q
        }:
            raise ValueError(
                f"data iterator state at step {step} was saved in a stage starting at step "
                f"{state['stage_start']} with other weights than the config gives now; a resumed run must "
                "keep the stage it resumes in (put new weights in a later data.schedule stage)"
            )
        self._step, self._row, self._block = step, state["row"], None
        self._counts = [state["counts"].get(n, 0) for n in self._names]
        self._totals = [state["windows_read"].get(n, 0) for n in self._names]
