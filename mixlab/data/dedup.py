"""Train/eval hygiene: exact and near-duplicate detection with hashed word 8-gram shingles.

A train document is contaminated by an eval document when either
  exact  they are equal after collapsing whitespace, or
  near   their sets of shingles overlap by >= 80% of the smaller set:
         |S(train) & S(eval)| / min(|S(train)|, |S(eval)|) >= NEAR_THRESHOLD,
where S(d) is the set of 64-bit hashes of d's runs of 8 whitespace-separated words (a document of
fewer than 8 words has one shingle of all its words). Dividing by the smaller set (the overlap
coefficient, not Jaccard) also catches a train document that contains an eval document whole, or
is a fragment of one.

Shingles that occur in more than MAX_EVAL_DOCS_PER_SHINGLE eval documents are ignored on both sides:
they are boilerplate (licence headers) or templates (every generated gcd question starts with the
same 8 words), shared by design, and would make every templated problem look like every other. This
is exact set arithmetic, not MinHash: the corpus is small enough (~10 MB) to compare every shingle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

SHINGLE_WORDS = 8
NEAR_THRESHOLD = 0.8
MAX_EVAL_DOCS_PER_SHINGLE = 20

_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime: odd, so the polynomial hash mixes
_word_hashes: dict[str, int] = {}  # process-wide memo; blake2b keeps hashes stable across processes


def normalise(text: str) -> str:
    """Whitespace collapsed to single spaces: the key of exact duplicates."""
    return " ".join(text.split())


def _word_hash(word: str) -> int:
    h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
    _word_hashes[word] = h
    return h


def shingle_table(docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(shingle hash uint64, document index int64) pairs of all `docs`, each once, sorted by hash."""
    memo, ids, lengths = _word_hashes, [], []
    for doc in docs:
        words = doc.split()
        ids.extend([memo[w] if w in memo else _word_hash(w) for w in words])
        lengths.append(len(words))
    words_ = np.array(ids, dtype=np.uint64)
    lengths_ = np.array(lengths, dtype=np.int64)
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), lengths_)
    k, n = SHINGLE_WORDS, len(words_)
    hashes, owners = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)]
    if n >= k:
        h = words_[: n - k + 1].copy()
        for t in range(1, k):  # polynomial hash of each window, wrapping mod 2**64
            h = h * _MULTIPLIER + words_[t : n - k + 1 + t]
        inside = doc_of[: n - k + 1] == doc_of[k - 1 :]  # windows that do not cross documents
        hashes.append(h[inside])
        owners.append(doc_of[: n - k + 1][inside])
    short = np.flatnonzero((lengths_ > 0) & (lengths_ < k))
    if len(short):
        starts = np.cumsum(lengths_) - lengths_
        hashes.append(
            np.array([_short_hash(ids[starts[i] : starts[i] + lengths[i]]) for i in short], np.uint64)
        )
        owners.append(short.astype(np.int64))
    h, owner = np.concatenate(hashes), np.concatenate(owners)
    # Windows come in document order and a short document has a single shingle, so a stable sort by
    # hash leaves equal (hash, document) pairs adjacent: cheaper than sorting by both.
    order = np.argsort(h, kind="stable")
    h, owner = h[order], owner[order]
    first = np.ones(len(h), bool)
    first[1:] = (h[1:] != h[:-1]) | (owner[1:] != owner[:-1])
    return h[first], owner[first]


def _short_hash(ids: list[int]) -> int:
    """Shingle of a document shorter than 8 words; the length is mixed in first, so it cannot
    equal an 8-word shingle except by a 2**-64 accident."""
    h = len(ids)
    for w in ids:
        h = (h * int(_MULTIPLIER) + w) % 2**64
    return h


def _member(sorted_values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """query[i] in sorted_values, by binary search (np.isin would sort the large query)."""
    if not len(sorted_values):
        return np.zeros(len(query), bool)
    at = np.minimum(np.searchsorted(sorted_values, query), len(sorted_values) - 1)
    return sorted_values[at] == query


class EvalIndex:
    """The eval documents to protect: their normalised texts and informative shingles."""

    def __init__(self, docs: Sequence[str]):
        self.size = len(docs)
        self.exact = {normalise(d) for d in docs}
        h, owner = shingle_table(docs)
        unique, counts = np.unique(h, return_counts=True)
        self.common = unique[counts > MAX_EVAL_DOCS_PER_SHINGLE]
        keep = ~_member(self.common, h)
        self.hashes, self.owners = h[keep], owner[keep]  # still sorted by hash
        self.sizes = np.bincount(self.owners, minlength=self.size)

    def contaminated(self, docs: Sequence[str]) -> list[str | None]:
        """Per document: "exact", "near" or None (clean)."""
        verdicts: list[str | None] = ["exact" if normalise(d) in self.exact else None for d in docs]
        h, owner = shingle_table(docs)
        keep = ~_member(self.common, h)
        h, owner = h[keep], owner[keep]
        sizes = np.bincount(owner, minlength=len(docs))
        hit = _member(self.hashes, h)
        owner, h = owner[hit], h[hit]  # few: find the eval documents of these only
        left = np.searchsorted(self.hashes, h, "left")
        counts = np.searchsorted(self.hashes, h, "right") - left
        # One (train doc, eval doc) pair per shared shingle, at most MAX_EVAL_DOCS_PER_SHINGLE each.
        pair_train = np.repeat(owner, counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        pair_eval = self.owners[np.repeat(left, counts) + within]
        keys, shared = np.unique(pair_train * max(self.size, 1) + pair_eval, return_counts=True)
        t, e = keys // max(self.size, 1), keys % max(self.size, 1)
        overlap = shared / np.maximum(np.minimum(sizes[t], self.sizes[e]), 1)
        for i in np.unique(t[overlap >= NEAR_THRESHOLD]):
            verdicts[i] = verdicts[i] or "near"
        return verdicts
