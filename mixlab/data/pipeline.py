"""Grain input pipeline: one packed stream per domain, mixed by weight, batched.

Per active domain (each step is one small function below, tested on its own):

  documents -> this process's shard -> shuffle (seed from run seed + domain NAME) -> repeat
    -> tokenize + eos -> pack into windows of seq_len + 1 tokens
    -> {inputs, targets, domain, loss_mask}

then `IterDataset.mix` interleaves the domain streams deterministically by weight and `batch` stacks
them. Every sequence has seq_len tokens, so the realised token share of a domain equals its weight
(to Grain's integer proportions, see `_mix_proportions`). A domain's stream depends only on (seed,
domain, seq_len, shard): changing the other weights changes how often it is read, never what it
yields, so the arms of an ablation see common random numbers.

Batches are dicts of numpy arrays, B = per-process batch, L = seq_len:
  inputs     int32[B, L]
  targets    int32[B, L]    inputs shifted by one
  domain     int32[B, L]    index into `resolve_mixture(data.weights).names`
  loss_mask  float32[B, L]  1.0 where the target is a real token, 0.0 on padding
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
from grain.experimental import ConcatThenSplitIterDataset

from mixlab.data.corpus import load_documents
from mixlab.data.mixture import Mixture, resolve_mixture
from mixlab.data.tokenizer import ByteTokenizer

Batch = dict[str, np.ndarray]

_TOKENIZER = ByteTokenizer()
# Documents are already in memory: reader threads would only contend for the GIL (Grain's advice).
_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def domain_seed(seed: int, domain: str) -> int:
    """Shuffle seed of one domain's stream, a function of the domain's name and not its position."""
    digest = hashlib.sha256(f"{seed}/{domain}".encode()).digest()
    return int.from_bytes(digest[:4], "big")  # Grain seeds are in [0, 2**32)


def domain_source(domain: str, split: str, *, shard_index: int = 0, shard_count: int = 1) -> grain.MapDataset:
    """One process's share of a domain's documents: every shard_count-th, from shard_index.

    Sharding comes before shuffling so that processes read disjoint documents; slicing a mixed
    stream instead would give process 0 whole domains (STACK.md section 4).
    """
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index={shard_index} is outside [0, shard_count={shard_count})")
    source = grain.MapDataset.source(load_documents(domain, split))[shard_index::shard_count]
    if len(source) == 0:
        raise ValueError(
            f"domain {domain!r} has no {split} documents for shard {shard_index} of {shard_count}"
        )
    return source


def tokenize(text: str) -> dict[str, np.ndarray]:
    """A document's byte tokens followed by eos, so packed documents stay delimited."""
    tokens = np.append(_TOKENIZER.encode(text), np.int32(_TOKENIZER.eos_id))
    return {"tokens": tokens.astype(np.int32)}


def pack(ds: grain.IterDataset, seq_len: int) -> grain.IterDataset:
    """Concatenates token streams and cuts windows of seq_len + 1 tokens (inputs plus one target).

    Grain's ConcatThenSplit splits long documents across windows, keeps the cut remainder for the
    next window, and checkpoints that remainder as (document, slice): its state is a few integers.
    It pads only when its input ends, which an infinite training stream never does; eval's last
    window is padded and masked. The token pair straddling two windows is never a target (1 pair
    in seq_len + 1).
    """
    return ConcatThenSplitIterDataset(ds, length_struct={"tokens": seq_len + 1})


def to_example(window: dict[str, np.ndarray], domain_id: int) -> dict[str, np.ndarray]:
    """Splits a packed window into next-token inputs/targets; tags every token with its domain."""
    tokens, segment_ids = window["tokens"], window["tokens_segment_ids"]
    seq_len = len(tokens) - 1
    return {
        "inputs": tokens[:-1].astype(np.int32),
        "targets": tokens[1:].astype(np.int32),
        # The domain is attached per stream, before mixing: the mix does not report its source.
        "domain": np.full((seq_len,), domain_id, np.int32),
        # Segment id 0 marks padding; a target position counts only if the target token is real.
        "loss_mask": (segment_ids[1:] > 0).astype(np.float32),
    }


def sequences(documents: grain.IterDataset, *, seq_len: int, domain_id: int) -> grain.IterDataset:
    """Text documents -> examples of one domain."""
    packed = pack(documents.map(tokenize), seq_len)
    return packed.map(lambda window: to_example(window, domain_id))


def _mix_proportions(mixture: Mixture) -> dict[str, float]:
    """Active weights as the integers Grain would use, but rounded instead of truncated.

    Grain scales the smallest weight to 100 and truncates the rest, so 0.7 / 0.1 * 100 =
    699.99... would become 699; handing it the rounded integers keeps it exact (scale 1.0).
    """
    active = {n: w for n, w in mixture.as_dict().items() if w > 0}
    smallest = min(active.values())
    return {n: float(round(100 * w / smallest)) for n, w in active.items()}


def _seq_len(data_cfg: ml_collections.ConfigDict | Any) -> int:
    seq_len = data_cfg.seq_len
    if isinstance(seq_len, bool) or not isinstance(seq_len, int | np.integer) or seq_len < 1:
        raise ValueError(f"data.seq_len = {seq_len!r} must be a positive integer")
    return int(seq_len)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} = {value!r} must be a positive integer")


def make_train_dataset(
    data_cfg: ml_collections.ConfigDict,
    *,
    batch_size: int,
    seed: int,
    shard_index: int | None = None,
    shard_count: int | None = None,
) -> grain.IterDataset:
    """The infinite training stream of this process.

    Args:
      data_cfg: `weights` (domain -> weight) and `seq_len`.
      batch_size: sequences per batch on this process.
      seed: run-level data seed; each domain's shuffle seed comes from it and the domain's name.
      shard_index: this process's shard; defaults to `jax.process_index()`.
      shard_count: number of shards; defaults to `jax.process_count()`.

    Returns:
      An IterDataset of batches (see the module docstring); `iter()` of it supports
      `get_state()`/`set_state()` for `grain.checkpoint.CheckpointSave`.
    """
    mixture = resolve_mixture(data_cfg.weights)
    seq_len = _seq_len(data_cfg)
    _check_positive(batch_size=batch_size)
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    streams = {}
    for name in mixture.active:
        documents = (
            domain_source(name, "train", shard_index=shard_index, shard_count=shard_count)
            .shuffle(seed=domain_seed(seed, name))
            .repeat()  # reshuffled each epoch
            .to_iter_dataset(_READ_OPTIONS)
        )
        streams[name] = sequences(documents, seq_len=seq_len, domain_id=mixture.names.index(name))
    # Keyed by name, so a checkpoint restores each domain's position by name even if the weights
    # (or the set of active domains) changed in between.
    mixed = grain.IterDataset.mix(streams, _mix_proportions(mixture))
    return mixed.batch(batch_size, drop_remainder=True)


def eval_batches(
    data_cfg: ml_collections.ConfigDict, domain: str, *, batch_size: int, num_batches: int
) -> list[Batch]:
    """Up to `num_batches` fixed batches from the eval split of `domain`, in corpus order.

    The eval split is read once, unshuffled and unsharded, packed like training; its last window is
    padded (loss_mask 0). Fewer batches come back when the split runs out.

    Raises:
      ValueError: if `domain` is not in `data_cfg.weights` or has less than one full batch.
    """
    mixture = resolve_mixture(data_cfg.weights)
    seq_len = _seq_len(data_cfg)
    _check_positive(batch_size=batch_size, num_batches=num_batches)
    if domain not in mixture.names:
        raise ValueError(f"eval domain {domain!r} is not in data.weights (have: {', '.join(mixture.names)})")
    documents = domain_source(domain, "eval").to_iter_dataset(_READ_OPTIONS)
    examples = sequences(documents, seq_len=seq_len, domain_id=mixture.names.index(domain))
    batches = list(itertools.islice(examples.batch(batch_size, drop_remainder=True), num_batches))
    if not batches:
        raise ValueError(
            f"eval split of domain {domain!r} has fewer than batch_size={batch_size} sequences "
            f"of seq_len={seq_len}"
        )
    return batches
