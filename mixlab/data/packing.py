"""Random-access packing: window k of a domain's endless, epoch-shuffled token stream.

A domain's stream is its documents, each tokenized and followed by eos, concatenated in a fresh
shuffled order every epoch (epoch e+1 follows epoch e in the same stream), and cut into consecutive
windows of `window` = seq_len + 1 tokens (inputs plus one target; the token pair straddling two
windows is never a target, 1 pair in seq_len + 1).

Window k is a pure function of (documents, seed, k): no window before it is needed. That is what
lets each process read just the windows the global layout gives its rows (interleave.py), so P
processes together read exactly what one process would, and keeps the pipeline state to integers.
Grain's ConcatThenSplit packs sequentially and can do neither.

Only the documents a window overlaps are tokenized (or read, for prepared shards), and the last few are
cached, so a long document read window by window is tokenized once per process. The caches are not
thread-safe: the pipeline reads with `num_threads=0` (documents are in memory; threads would only
contend for the GIL).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mixlab.data.tokenizer import ByteTokenizer

_TOKENIZER = ByteTokenizer()
PAD_ID = ByteTokenizer.pad_id  # never a real token in any tokenizer (tokenizer.py's contract): 0
_DOC_CACHE = 8  # documents; a window spans a handful, consecutive windows share the boundary one


def tokenize(text: str) -> np.ndarray:
    """A document's byte tokens followed by eos (int32), so packed documents stay delimited."""
    # Other tokenizers go through `sources.Catalog`, which hands PackedWindows its own encode.
    return np.append(_TOKENIZER.encode(text), np.int32(_TOKENIZER.eos_id)).astype(np.int32)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed integer hash, identical on every platform and numpy version."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)  # uint64 arrays wrap silently
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def epoch_order(num_documents: int, seed: int, epoch: int) -> np.ndarray:
    """The document order of one epoch: a permutation that depends on (seed, epoch) only.

    Hash-sorting instead of `np.random` keeps it stable across numpy versions (a resumed or re-run
    arm must read the same documents).
    """
    salt = _mix64(_mix64(np.array([seed], np.uint64)) ^ np.uint64(epoch))
    return np.argsort(_mix64(np.arange(num_documents, dtype=np.uint64) ^ salt), kind="stable")


class PackedWindows:
    """`windows(k)` -> int32[window]: the k-th window of a domain's token stream.

    Args:
      documents: the domain's documents in canonical (corpus) order: texts, or anything `encode` takes
        (token arrays of prepared shards).
      window: tokens per window (seq_len + 1).
      seed: shuffle seed; None keeps corpus order in every epoch (eval).
      endless: if False the stream is one epoch; windows past its end raise IndexError and the last
        window is padded with PAD_ID.
      encode: document -> token ids, eos included.
      lengths: len(encode(d)) of every document when already known (sources.Stream has them), which
        saves a pass over all documents.
    """

    def __init__(
        self,
        documents: Sequence[Any],
        *,
        window: int,
        seed: int | None,
        endless: bool = True,
        encode: Callable[[Any], np.ndarray] = tokenize,
        lengths: np.ndarray | None = None,
    ):
        if not documents:
            raise ValueError("no documents to pack")
        self._documents, self._encode = documents, encode
        self.window, self._seed, self._endless = window, seed, endless
        # Without lengths, one pass to learn them; the tokens themselves are recomputed on demand.
        if lengths is None:
            lengths = np.array([len(encode(d)) for d in documents], np.int64)
        elif len(lengths) != len(documents):
            raise ValueError(f"{len(lengths)} lengths for {len(documents)} documents")
        self.lengths = np.asarray(lengths, np.int64)
        self.epoch_tokens = int(self.lengths.sum())
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._docs: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()

    def __len__(self) -> int:
        """Windows in one epoch (rounded up: the last one is padded when not endless)."""
        return -(-self.epoch_tokens // self.window)

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(document order, start offset of each document in that order) of one epoch."""
        if epoch not in self._epochs:
            n = len(self._documents)
            order = np.arange(n) if self._seed is None else epoch_order(n, self._seed, epoch)
            starts = np.concatenate([[0], np.cumsum(self.lengths[order])[:-1]])
            if len(self._epochs) >= 2:  # a window straddles at most two epochs
                self._epochs.pop(min(self._epochs))
            self._epochs[epoch] = (order, starts)
        return self._epochs[epoch]

    def _tokens(self, doc: int) -> np.ndarray:
        if doc in self._docs:
            self._docs.move_to_end(doc)
        else:
            self._docs[doc] = self._encode(self._documents[doc])
            if len(self._docs) > _DOC_CACHE:
                self._docs.popitem(last=False)
        return self._docs[doc]

    def spans(self, k: int) -> list[tuple[int, int, int, int]]:
        """(epoch, document index, first token, end token) of each piece of window k: its provenance."""
        k = int(k)
        if k < 0 or (not self._endless and k >= len(self)):
            raise IndexError(f"window {k} is outside the stream ({len(self)} windows per epoch)")
        spans, pos, end = [], k * self.window, (k + 1) * self.window
        while pos < end:
            epoch, offset = divmod(pos, self.epoch_tokens)
            if epoch and not self._endless:
                break  # past the single epoch: the rest of the window is padding
            order, starts = self._epoch(epoch)
            j = int(np.searchsorted(starts, offset, side="right")) - 1
            a = offset - int(starts[j])
            n = min(end - pos, int(self.lengths[order[j]]) - a)
            spans.append((epoch, int(order[j]), a, a + n))
            pos += n
        return spans

    def __call__(self, k: int) -> np.ndarray:
        out = np.full((self.window,), PAD_ID, np.int32)
        filled = 0
        for _, doc, a, b in self.spans(k):
            out[filled : filled + b - a] = self._tokens(doc)[a:b]
            filled += b - a
        return out
