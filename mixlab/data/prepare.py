"""Pre-tokenizes every domain of a config's mixture into ArrayRecord shards (`experiments.prepare`).

  OUT/tokenizer.json   the tokenizer the shards hold ids of (trained here with --train_tokenizer bpe)
  OUT/<domain>/<split>-*-of-*.arrayrecord (+ .lengths.npy)   shards.py's layout
  OUT/index.json       tokenizer, dtype, documents and tokens per domain and split, what was skipped
  OUT/mixture.json     a mixture file that trains from the shards: same domains, same order (so the
                       same ids), the config's base weights, every split as prepare found it

Everything is written into OUT.partial/ (a sibling, so on the same filesystem) and renamed to OUT at the
end: an interrupted prepare leaves no OUT, and its rerun replaces the stale OUT.partial.

Training from OUT/mixture.json yields exactly the token stream that tokenizing the original sources on
the fly yields (same documents, same order, same tokens; tested), without tokenizing.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import ml_collections

from mixlab.data import shards, sources, tokenizer_train
from mixlab.data.mixfile import SPLITS
from mixlab.data.plan import resolve_plan

SHARD_TOKENS = 1 << 26  # ~64M tokens (128 MB of uint16) per shard
PARTIAL_MARK = ".mixlab-prepare-partial"  # what makes OUT.partial ours to delete


def _write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)  # the index last and whole: a prepare cut short leaves no index


def prepare(
    config: ml_collections.ConfigDict,
    out: str,
    *,
    train_tokenizer: str = "",
    vocab_size: int = 4096,
    sample_bytes: int = 8 << 20,
    shard_tokens: int = SHARD_TOKENS,
) -> dict[str, Any]:
    """Writes OUT (see the module docstring) for `config.data`'s domains; returns the index.

    Args:
      config: a full config; its `data` section chooses the domains (built-in or mixture file), the
        tokenizer (unless one is trained here) and the base weights written to mixture.json.
      out: an empty or new directory.
      train_tokenizer: "" to use data.tokenizer, or "bpe" to train one on a balanced sample of every
        domain's train split (tokenizer_train.py) and tokenize with it.
      vocab_size, sample_bytes: of the trained tokenizer.
      shard_tokens: about this many tokens per shard.
    """
    if train_tokenizer not in ("", "bpe"):
        raise ValueError(
            f"--train_tokenizer = {train_tokenizer!r}: expected 'bpe' (or '' for data.tokenizer)"
        )
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a directory")
    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"--out {out} is not empty; prepare writes into a new or empty directory")
    plan = resolve_plan(config.data, global_batch_size=int(config.train.batch_size))
    catalog, trained = plan.catalog, None
    if train_tokenizer:
        texts = {n: catalog.texts(n, "train") for n in catalog.names}
        tok, used = tokenizer_train.train_bpe(texts, vocab_size=vocab_size, sample_bytes=sample_bytes)
        trained = {"kind": "bpe", "vocab_size": tok.vocab_size, "sample_bytes_per_domain": used}
        catalog = sources.Catalog(catalog.mixture, tok, strict_utf8=catalog.strict_utf8)
    final, out = out, _start_partial(out)
    _write_json(os.path.join(out, "tokenizer.json"), catalog.tokenizer.to_dict())
    dtype = shards.dtype_for(catalog.tokenizer.vocab_size)
    domains, mixture = {}, {}
    weights = plan.stages[0].base.as_dict()
    for i, name in enumerate(catalog.names):
        splits, file_sources = {}, []
        for split in SPLITS:
            if not catalog.has_split(name, split):
                continue
            stream = catalog.stream(name, split)
            docs = [stream.encode(stream.documents[j]) for j in range(len(stream.documents))]
            splits[split] = shards.write_split(out, name, split, docs, dtype=dtype, shard_tokens=shard_tokens)
            pattern = os.path.join(name, f"{split}-*.arrayrecord")
            file_sources.append({"kind": "arrayrecord", "path": pattern, "split": split})
        domains[name] = {"id": i, "splits": splits}
        mixture[name] = {"weight": weights[name], "sources": file_sources}
    index = {
        "format": shards.FORMAT,
        "tokenizer": catalog.tokenizer.summary(),
        "trained_tokenizer": trained,
        "dtype": dtype,
        "from": catalog.label,
        "tokens": "per document: its tokens plus one eos",
        "domains": domains,
        "sources": catalog.manifest(),  # per mixture-file source: files, documents, skips
    }
    _write_json(os.path.join(out, "mixture.json"), {"domains": mixture})
    _write_json(os.path.join(out, shards.INDEX), index)
    os.remove(os.path.join(out, PARTIAL_MARK))
    if os.path.isdir(final):
        os.rmdir(final)  # empty (checked above): rename does not replace a directory on every system
    os.rename(out, final)
    return index


def _start_partial(out: str) -> str:
    """A fresh OUT.partial/ (what an interrupted prepare left is removed; a directory of that name that
    prepare did not make is an error)."""
    partial = os.path.normpath(out) + ".partial"
    if os.path.exists(partial):
        if not os.path.exists(os.path.join(partial, PARTIAL_MARK)):
            raise ValueError(f"{partial} exists and was not made by experiments.prepare; move it away")
        shutil.rmtree(partial)
    os.makedirs(partial)
    open(os.path.join(partial, PARTIAL_MARK), "w").close()
    return partial
