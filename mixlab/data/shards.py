"""Pre-tokenized ArrayRecord shards: what `experiments.prepare` writes and `"kind": "arrayrecord"` reads.

Layout under the output directory DIR:

  DIR/index.json                                  tokenizer, dtype, documents and tokens per domain/split
  DIR/<domain>/<split>-00000-of-000NN.arrayrecord  record i = document i's tokens + eos, in corpus order
  DIR/<domain>/<split>-00000-of-000NN.lengths.npy  int64 tokens per record, so packing needs no scan

Records are raw little-endian uint16 (int32 when the vocabulary is over 65,536 ids), one document per
record (`group_size:1`: random access is what epoch-shuffled packing does). A reader finds the index in
the shard's directory or its parent, and refuses shards the index does not list (stale files).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

FORMAT = "mixlab-prepared/1"
INDEX = "index.json"
WRITER_OPTIONS = "group_size:1,zstd:1"  # measured: ~40k random reads/s per core, 60M tokens/s


def dtype_for(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "int32"


def shard_name(split: str, i: int, n: int) -> str:
    return f"{split}-{i:05d}-of-{n:05d}.arrayrecord"


def lengths_path(shard: str) -> str:
    return shard[: -len(".arrayrecord")] + ".lengths.npy"


def write_split(
    out_dir: str, domain: str, split: str, docs: Sequence[np.ndarray], *, dtype: str, shard_tokens: int
) -> dict[str, Any]:
    """Writes one domain's split as contiguous shards of about `shard_tokens` tokens; returns its entry."""
    from array_record.python.array_record_module import ArrayRecordWriter

    little = np.dtype(dtype).newbyteorder("<")
    lengths = np.array([len(d) for d in docs], np.int64)
    total = int(lengths.sum())
    n = max(1, min(len(docs), -(-total // shard_tokens)))
    # Shard boundaries at the documents where the running token count crosses each 1/n of the total.
    cuts = np.searchsorted(np.cumsum(lengths), [total * (i + 1) / n for i in range(n - 1)], side="left") + 1
    bounds = [0, *[int(c) for c in cuts], len(docs)]
    os.makedirs(os.path.join(out_dir, domain), exist_ok=True)
    shards = []
    for i in range(n):
        rel = os.path.join(domain, shard_name(split, i, n))
        writer = ArrayRecordWriter(os.path.join(out_dir, rel), WRITER_OPTIONS)
        for doc in docs[bounds[i] : bounds[i + 1]]:
            writer.write(np.asarray(doc).astype(little).tobytes())
        writer.close()
        np.save(lengths_path(os.path.join(out_dir, rel)), lengths[bounds[i] : bounds[i + 1]])
        shards.append(rel)
    return {"documents": len(docs), "tokens": total, "shards": shards}


def find_index(shard: str) -> str | None:
    here = os.path.dirname(os.path.abspath(shard))
    for d in (here, os.path.dirname(here)):
        if os.path.exists(os.path.join(d, INDEX)):
            return os.path.join(d, INDEX)
    return None


def read_index(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"prepared index {path} is unreadable: {e}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ValueError(f"prepared index {path} is not a {FORMAT} index (re-run experiments.prepare)")
    return index


def split_of(shard: str) -> str | None:
    """The split a shard's file name gives (train-*/eval-*), or None."""
    prefix = os.path.basename(shard).split("-", 1)[0]
    return prefix if prefix in ("train", "eval") else None


class TokenShards:
    """Documents of some prepared shards as a lazy sequence: docs[i] -> int32-able token array (eos last).

    Args:
      paths: shard files, in order; all under one index.
      what: how messages name the source.
    """

    def __init__(self, paths: Sequence[str], *, what: str):
        from array_record.python.array_record_data_source import ArrayRecordDataSource

        index_path = find_index(paths[0])
        if index_path is None:
            raise ValueError(
                f"{what}: no {INDEX} beside {paths[0]} or in its parent (made by experiments.prepare?)"
            )
        self.index_path, self.index = index_path, read_index(index_path)
        root = os.path.dirname(index_path)
        listed = {
            os.path.normpath(os.path.join(root, s))
            for d in self.index["domains"].values()
            for split in d["splits"].values()
            for s in split["shards"]
        }
        lengths = []
        for p in paths:
            if os.path.normpath(os.path.abspath(p)) not in listed:
                raise ValueError(f"{what}: shard {p} is not listed in {index_path} (a stale or foreign file)")
            if find_index(p) != index_path:
                raise ValueError(f"{what}: shards {paths[0]} and {p} belong to different prepared indexes")
            try:
                lengths.append(np.load(lengths_path(p)))
            except (OSError, ValueError) as e:
                raise ValueError(f"{what}: lengths of shard {p} are unreadable: {e}") from None
        self.tokenizer: dict[str, Any] = self.index["tokenizer"]
        self.dtype = np.dtype(self.index["dtype"]).newbyteorder("<")
        self.lengths = np.concatenate(lengths).astype(np.int64)
        self._source = ArrayRecordDataSource(list(paths))
        if len(self._source) != len(self.lengths):
            raise ValueError(
                f"{what}: shards hold {len(self._source)} records but their lengths files "
                f"{len(self.lengths)}: a partly written prepare? (re-run experiments.prepare)"
            )

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.frombuffer(self._source[int(i)], self.dtype)
