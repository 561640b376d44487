"""Trains a byte-level BPE offline on a balanced sample of a mixture's domains (HF `tokenizers`).

Balanced: every domain gives the same byte budget (sample_bytes / domains), whatever its size or weight,
so one tokenizer serves every arm of a study (an arm that removes code must not change the vocabulary)
and a large domain does not crowd out the merges a small one needs. Documents are taken in the order of
a hash of their text, a fixed pseudo-random sample; only the train split is used (eval text must not
shape the vocabulary). Training ~8 MB takes a few seconds on one core.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from mixlab.data.tokenizer import SPECIALS, BPETokenizer

MIN_VOCAB = len(SPECIALS) + 256 + 1  # the byte alphabet plus at least one merge


def balanced_sample(texts: Mapping[str, Sequence[str]], sample_bytes: int) -> dict[str, list[str]]:
    """Up to sample_bytes / len(texts) UTF-8 bytes of documents per domain, in hash order."""
    per_domain = max(1, sample_bytes // max(1, len(texts)))
    out = {}
    for name, docs in texts.items():
        order = sorted(range(len(docs)), key=lambda i: hashlib.sha256(docs[i].encode("utf-8")).digest())
        taken, size = [], 0
        for i in order:
            if size >= per_domain:
                break
            taken.append(docs[i][: per_domain - size])  # cut a huge document rather than skip it
            size += len(taken[-1].encode("utf-8"))
        out[name] = taken
    return out


def train_bpe(
    texts: Mapping[str, Sequence[str]], *, vocab_size: int, sample_bytes: int = 8 << 20
) -> tuple[BPETokenizer, dict[str, int]]:
    """A byte-level BPE of `vocab_size` ids (pad, bos, eos, 256 bytes, merges) and bytes used per domain."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if (
        isinstance(vocab_size, bool)
        or not isinstance(vocab_size, int)
        or not MIN_VOCAB <= vocab_size <= 1 << 16
    ):
        raise ValueError(f"--vocab_size = {vocab_size!r} must be an integer in [{MIN_VOCAB}, 65536]")
    sample = balanced_sample({n: d for n, d in texts.items() if d}, sample_bytes)
    if not sample:
        raise ValueError("no text to train a tokenizer on (ArrayRecord domains hold tokens, not text)")
    tok = Tokenizer(models.BPE())
    # No normaliser and no prefix space: decode(encode(text)) == text for every string.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS),  # first, so they get ids 0, 1, 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([doc for docs in sample.values() for doc in docs], trainer)
    used = {n: sum(len(d.encode("utf-8")) for d in docs) for n, docs in sample.items()}
    return BPETokenizer(json.loads(tok.to_str())), used
