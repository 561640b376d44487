"""Grain input pipeline: one packed stream per domain, interleaved token-exactly by stage weights.

Per domain read in some stage (each step a small function below, tested on its own):

  documents (sources.py: the built-in corpus or a mixture file's sources, text or prepared token shards)
    -> PackedWindows: tokenize + eos, concatenated in an epoch-shuffled order (seed from the run seed
    and the domain NAME), cut into windows of seq_len + 1 tokens, window k on demand (packing.py)

and `ScheduledMix` (interleave.py) lays out the global batch of every step: which domain each row
holds, by the stage's weights, and which window of that domain (the next unread one). Each row
fetches its window as {inputs, targets, domain, loss_mask}, and `batch` stacks this process's rows.
Every sequence has seq_len tokens of one domain, so token share = sequence share, and every 1,000
consecutive sequences of the global stream hold each domain's share to within 0.5 percentage points.

Processes (shard_index p of shard_count P). Every process computes the same global layout and keeps
its block of rows [p * B, (p + 1) * B): where `jax.make_array_from_process_local_data` puts them when
the mesh orders devices by process, as `jax.make_mesh` does (another order permutes the rows of a
step, which leaves its loss unchanged). So the union of the processes IS the single-process stream:
the global batch of every step equals, row for row and token for token, the batch one process with
batch P x B reads. Processes read disjoint windows, hence disjoint token ranges of the documents,
together covering every epoch of a domain exactly once. (A process's own rows are a slice of the
global layout: with tiny per-process batches they need not hold each share on their own; the step
trains on the global batch.)

Common random numbers: a domain's sequences are windows 0, 1, 2, ... of its stream, which depends only
on (seed, domain, seq_len): other domains' weights, arms, schedules and the process count change how
often and where it is read, never what it yields.

Batches are dicts of numpy arrays, B = per-process batch, L = seq_len:
  inputs     int32[B, L]
  targets    int32[B, L]    inputs shifted by one
  domain     int32[B, L]    index into the registry (`DataPlan.names`: `corpus.DOMAINS` or the file's)
  loss_mask  float32[B, L]  1.0 where the target is a real token, 0.0 on padding (eval's last window)
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Sequence
from typing import Any

import grain
import jax
import numpy as np

from mixlab.data import packing, sources
from mixlab.data.interleave import ScheduledMix
from mixlab.data.mixture import check_domain
from mixlab.data.plan import positive_int, resolve_plan

Batch = dict[str, np.ndarray]

# Eval reads once, in order; documents are in memory, so threads would only contend for the GIL.
_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def domain_seed(seed: int, domain: str) -> int:
    """Shuffle seed of one domain's stream, a function of the domain's name and not its position."""
    digest = hashlib.sha256(f"{seed}/{domain}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def domain_windows(
    domain: str, split: str, *, seq_len: int, seed: int | None, catalog: sources.Catalog | None = None
) -> packing.PackedWindows:
    """A domain's packed stream: endless and shuffled with `seed`, or (seed None) one epoch in order.

    `catalog` says where documents come from and how they are tokenized (default: the built-in
    corpus, bytes)."""
    stream = (catalog or sources.catalog({})).stream(domain, split)
    return packing.PackedWindows(
        stream.documents,
        window=seq_len + 1,
        seed=None if seed is None else domain_seed(seed, domain),
        endless=seed is not None,
        encode=stream.encode,
        lengths=stream.lengths,
    )


def to_example(window: np.ndarray, domain_id: int) -> dict[str, np.ndarray]:
    """Splits a window of seq_len + 1 tokens into next-token inputs/targets; tags every token."""
    seq_len = len(window) - 1
    return {
        "inputs": window[:-1].astype(np.int32),
        "targets": window[1:].astype(np.int32),
        "domain": np.full((seq_len,), domain_id, np.int32),
        # The pad id is never a real token, so a target counts exactly when it is not padding.
        "loss_mask": (window[1:] != packing.PAD_ID).astype(np.float32),
    }


class FetchWindow:
    """(domain index, window index) -> example: the last transform of the training stream."""

    def __init__(self, windows: Sequence[packing.PackedWindows], domain_ids: Sequence[int]):
        self._windows, self._ids = tuple(windows), tuple(domain_ids)

    def __call__(self, element: tuple[int, int]) -> dict[str, np.ndarray]:
        d, k = element
        return to_example(self._windows[d](k), self._ids[d])


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} = {value!r} must be a positive integer")


def make_train_dataset(
    data_cfg: Any,
    *,
    batch_size: int,
    seed: int,
    shard_index: int | None = None,
    shard_count: int | None = None,
) -> grain.IterDataset:
    """The endless training stream of this process.

    Args:
      data_cfg: the `data` config section (keys in plan.py: weights or schedule, seq_len, arm, ...).
      batch_size: sequences per batch on this process; the global batch is batch_size x shard_count.
      seed: run-level data seed; each domain's shuffle seed comes from it and the domain's name.
      shard_index: this process's shard; defaults to `jax.process_index()`.
      shard_count: number of shards; defaults to `jax.process_count()`.

    Returns:
      An IterDataset of batches (see the module docstring); `iter()` of it supports
      `get_state()`/`set_state()` for `grain.checkpoint.CheckpointSave`.
    """
    _check_positive(batch_size=batch_size)
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    plan = resolve_plan(data_cfg, global_batch_size=batch_size * shard_count)
    names = plan.active
    mixed = ScheduledMix(
        names,
        [(s.start_step, s.mixture.as_dict()) for s in plan.stages],
        batch_size=batch_size,
        shard_index=shard_index,
        shard_count=shard_count,
    )
    windows = [
        domain_windows(n, "train", seq_len=plan.seq_len, seed=seed, catalog=plan.catalog) for n in names
    ]
    fetch = FetchWindow(windows, [plan.names.index(n) for n in names])
    return mixed.map(fetch).batch(batch_size, drop_remainder=True)


def eval_batches(data_cfg: Any, domain: str, *, batch_size: int, num_batches: int) -> list[Batch]:
    """Up to `num_batches` fixed batches from the eval split of `domain`, in corpus order.

    Any registry domain can be evaluated, weighted or not (the `w/o code` arm is still scored on
    code). The split is read once, unshuffled and unsharded, packed like training; its last window
    is padded (loss_mask 0). Fewer batches come back when the split runs out.

    Raises:
      ValueError: if `domain` is unknown or its split has less than one full batch.
    """
    _check_positive(batch_size=batch_size, num_batches=num_batches)
    catalog = sources.catalog(data_cfg)
    names = catalog.names
    check_domain(domain, what="eval domain", domains=names)
    seq_len = positive_int(data_cfg.seq_len, "data.seq_len")
    windows = domain_windows(domain, "eval", seq_len=seq_len, seed=None, catalog=catalog)
    examples = grain.MapDataset.range(len(windows)).map(windows)
    examples = examples.map(functools.partial(to_example, domain_id=names.index(domain)))
    batched = examples.to_iter_dataset(_READ_OPTIONS).batch(batch_size, drop_remainder=True)
    batches = list(itertools.islice(batched, num_batches))
    if not batches:
        raise ValueError(
            f"eval split of domain {domain!r} has fewer than batch_size={batch_size} sequences "
            f"of seq_len={seq_len}"
        )
    return batches
