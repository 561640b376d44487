"""Where a run's domains come from: the built-in corpus or a mixture file's sources, and the tokenizer.

`catalog(data_cfg)` reads the `data` keys that choose them, once per process (cached on the file's
identity):

  mixture_file  "" for the built-in corpus (corpus.DOMAINS), or a JSON file of your own domains
                (mixfile.py); its domain order is the id registry
  tokenizer     "bytes" or "bpe:PATH" (tokenizer.py); text is tokenized with it, prepared ArrayRecord
                shards must have been made with it
  strict_utf8   False skips (and counts) documents that are not valid UTF-8; True makes them an error

A domain's split is a `Stream`: its documents in canonical order (text, or token arrays from prepared
shards, in source order) and the tokens of each (eos included), which is all packing needs. Text sources
are read into memory when a domain is first used (as the built-in corpus is); for data larger than
memory, prepare ArrayRecord shards, which are read record by record. A train document identical to an
eval document of its domain is removed and counted (with hash splitting this only happens for sources
given an explicit split); unlike the built-in corpus there is no near-duplicate or cross-domain check.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import functools
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mixlab.data import mixfile, readers, shards
from mixlab.data import tokenizer as tokenizers
from mixlab.data.builtin import corpus
from mixlab.data.tokenizer import BPETokenizer, Tokenizer

DEFAULTS: dict[str, Any] = {"mixture_file": "", "tokenizer": "bytes", "strict_utf8": False}
_log = logging.getLogger("mixlab")


def option(data_cfg: Any, key: str) -> Any:
    value = data_cfg.get(key, DEFAULTS[key]) if hasattr(data_cfg, "get") else DEFAULTS[key]
    return DEFAULTS[key] if value is None else value


@dataclasses.dataclass(frozen=True)
class Stream:
    """One domain split, ready to pack: documents[i] is text or a token array, lengths[i] its tokens."""

    documents: Sequence[Any]
    lengths: np.ndarray
    encode: Callable[[Any], np.ndarray]  # document -> int32 tokens followed by eos


class _Concat(Sequence):
    """Several document sequences (in-memory lists, prepared shards) read as one."""

    def __init__(self, parts: Sequence[Sequence[Any]]):
        self.parts = [p for p in parts if len(p)]
        self._starts = np.cumsum([0] + [len(p) for p in self.parts]).tolist()

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, i: int) -> Any:
        j = bisect.bisect_right(self._starts, int(i)) - 1
        return self.parts[j][int(i) - self._starts[j]]


def _lengths(part: Sequence[Any]) -> np.ndarray:
    """Tokens (eos included) of each document of a part: byte text, token arrays or prepared shards."""
    if isinstance(part, shards.TokenShards):
        return part.lengths
    if isinstance(part[0], str):  # only byte-tokenized text stays text: one token per UTF-8 byte
        return np.array([len(t.encode("utf-8")) + 1 for t in part], np.int64)
    return np.array([len(a) for a in part], np.int64)


def is_eval(text: str, fraction: float) -> bool:
    """The hash split: sha256 of the text below `fraction` of its range (identical texts agree)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


@dataclasses.dataclass
class _Domain:
    parts: dict[str, list[Sequence[Any]]]  # split -> texts / TokenShards, in source order
    sources: list[dict[str, Any]]  # per source: its stats and documents per split
    removed_eval_duplicates: int


class Catalog:
    """The registry of domains a run reads, their documents per split, and the tokenizer."""

    def __init__(self, mixture: mixfile.MixtureFile | None, tokenizer: Tokenizer, *, strict_utf8: bool):
        self.mixture, self.tokenizer, self.strict_utf8 = mixture, tokenizer, strict_utf8
        self.names: tuple[str, ...] = corpus.DOMAINS if mixture is None else mixture.names
        self.label = "the built-in corpus" if mixture is None else f"mixture file {mixture.path}"
        self._loaded: dict[str, _Domain] = {}
        self._streams: dict[tuple[str, str], Stream] = {}
        self._shards: dict[mixfile.SourceSpec, dict[str, shards.TokenShards]] = {}
        if mixture is not None:  # fail before anything trains: every glob matches, shards fit the tokenizer
            for d in mixture.domains:
                for s in d.sources:
                    paths = readers.files(s)
                    if s.kind == "arrayrecord":
                        self._shards[s] = self._shards_by_split(s, paths)

    @property
    def weights(self) -> dict[str, float] | None:
        """The mixture file's base weights (None for the built-in corpus: they come from data.weights)."""
        return None if self.mixture is None else self.mixture.weights

    def _tokenize(self, texts: list[str]) -> list[np.ndarray]:
        """BPE: all of a split at once (every core), kept as token arrays with their eos."""
        eos = np.int32(self.tokenizer.eos_id)
        return [np.append(t, eos) for t in self.tokenizer.encode_batch(texts)]

    def _shards_by_split(self, spec: mixfile.SourceSpec, paths: list[str]) -> dict[str, shards.TokenShards]:
        by_split: dict[str, list[str]] = collections.defaultdict(list)
        for p in paths:
            split = spec.split or shards.split_of(p)
            if split is None:
                raise ValueError(
                    f"{spec.what}: shard {p} is not named train-*/eval-*; give the source a split"
                )
            by_split[split].append(p)
        out = {split: shards.TokenShards(ps, what=spec.what) for split, ps in by_split.items()}
        for s in out.values():
            if s.tokenizer.get("sha256") != self.tokenizer.summary()["sha256"]:
                t = s.tokenizer
                made = f"{t.get('name')} (vocab {t.get('vocab_size')}, sha256 {t.get('sha256')})"
                raise ValueError(
                    f"tokenizer mismatch: {spec.what}: shards {spec.path} were made with {made} "
                    f"(index {s.index_path}), but data.tokenizer asks {self.tokenizer.describe()}"
                )
        return out

    def _load(self, name: str) -> _Domain:
        if name in self._loaded:
            return self._loaded[name]
        spec = self.mixture.domain(name)
        texts: dict[str, list[str]] = {"train": [], "eval": []}
        parts: dict[str, list[Any]] = {"train": [], "eval": []}
        sources = []
        for s in spec.sources:
            if s.kind == "arrayrecord":
                by_split = self._shards[s]
                for split, docs in by_split.items():
                    parts[split].append(docs)
                counts = {split: len(by_split.get(split, ())) for split in mixfile.SPLITS}
                sources.append({"kind": s.kind, "path": s.path, "documents": counts})
                continue
            docs, stats = readers.read(s, strict_utf8=self.strict_utf8)
            if stats.skipped:
                _log.warning(
                    "%s: skipped %d documents (%s)", s.what, stats.skipped, "; ".join(stats.skipped_examples)
                )
            mine: dict[str, list[str]] = {"train": [], "eval": []}
            for _, text in docs:
                mine[s.split or ("eval" if is_eval(text, spec.eval_fraction) else "train")].append(text)
            for split in mixfile.SPLITS:
                texts[split] += mine[split]
                parts[split].append(mine[split])
            info = {**dataclasses.asdict(stats), "documents": {k: len(v) for k, v in mine.items()}}
            sources.append(info)
        held_out = set(texts["eval"])
        removed = sum(t in held_out for t in texts["train"])
        if removed:
            parts["train"] = [
                [t for t in p if t not in held_out] if isinstance(p, list) else p for p in parts["train"]
            ]
            _log.warning("domain %r: removed %d train documents identical to eval documents", name, removed)
        self._loaded[name] = _Domain(parts, sources, removed)
        return self._loaded[name]

    def stream(self, domain: str, split: str) -> Stream:
        """A domain split's documents and lengths (cached); a ValueError when it has none."""
        if domain not in self.names:
            raise ValueError(f"unknown domain {domain!r} in {self.label} (known: {', '.join(self.names)})")
        key = (domain, split)
        if key not in self._streams:
            if self.mixture is None:
                parts: list[Sequence[Any]] = [corpus.load_documents(domain, split)]
            else:
                parts = self._load(domain).parts[split]
            if isinstance(self.tokenizer, BPETokenizer):  # bytes tokenize on demand: cheaper than storing
                parts = [self._tokenize(p) if isinstance(p, list) else p for p in parts]
            docs = _Concat(parts)
            if not len(docs):
                raise ValueError(f"domain {domain!r} of {self.label} has no {split} documents")
            lengths = np.concatenate([_lengths(p) for p in docs.parts])
            self._streams[key] = Stream(docs, lengths, self._encode)
        return self._streams[key]

    def _encode(self, doc: Any) -> np.ndarray:
        if isinstance(doc, str):
            return np.append(self.tokenizer.encode(doc), np.int32(self.tokenizer.eos_id)).astype(np.int32)
        return doc

    def has_split(self, domain: str, split: str) -> bool:
        if self.mixture is None:
            return True
        return any(len(p) for p in self._load(domain).parts[split])

    def available_tokens(self, domain: str, split: str = "train") -> int:
        """Tokens in one epoch of a domain's stream: every document's tokens plus its eos."""
        return int(self.stream(domain, split).lengths.sum())

    def texts(self, domain: str, split: str = "train") -> list[str]:
        """The text documents of a split (prepared shards hold tokens and are left out)."""
        if self.mixture is None:
            return corpus.load_documents(domain, split)
        return [t for p in self._load(domain).parts[split] if isinstance(p, list) for t in p]

    def manifest(self) -> dict[str, Any] | None:
        """Per mixture-file domain: weight, documents and tokens per split, per-source stats and skips."""
        if self.mixture is None:
            return None
        out = {}
        for i, d in enumerate(self.mixture.domains):
            loaded = self._load(d.name)
            splits = {}
            for split in mixfile.SPLITS:
                has = self.has_split(d.name, split)
                s = self.stream(d.name, split) if has else None
                splits[split] = {
                    "documents": len(s.documents) if s else 0,
                    "tokens": int(s.lengths.sum()) if s else 0,
                }
            out[d.name] = {
                "id": i,
                "weight": d.weight,
                "eval_fraction": d.eval_fraction,
                "splits": splits,
                "removed_eval_duplicates": loaded.removed_eval_duplicates,
                "sources": loaded.sources,
            }
        return {"mixture_file": self.mixture.path, "tokenizer": self.tokenizer.summary(), "domains": out}


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=8)
def _catalog(mixture_file: str, tokenizer_spec: str, strict_utf8: bool, _stamp: Any) -> Catalog:
    mixture = mixfile.load(mixture_file) if mixture_file else None
    return Catalog(mixture, tokenizers.from_spec(tokenizer_spec), strict_utf8=strict_utf8)


def catalog(data_cfg: Any) -> Catalog:
    """The Catalog a `data` config section describes (cached while the files it names are unchanged)."""
    mixture_file, spec, strict = (option(data_cfg, k) for k in ("mixture_file", "tokenizer", "strict_utf8"))
    if not isinstance(mixture_file, str):
        raise ValueError(f"data.mixture_file = {mixture_file!r} must be a path or ''")
    if not isinstance(strict, bool):
        raise ValueError(f"data.strict_utf8 = {strict!r} must be True or False")
    if not isinstance(spec, str):
        raise ValueError(f"data.tokenizer = {spec!r}: expected 'bytes' or 'bpe:PATH'")
    mixture_file = os.path.abspath(os.path.expanduser(mixture_file)) if mixture_file else ""
    tok_path = os.path.expanduser(spec[4:]) if spec.startswith("bpe:") else ""
    stamp = (_stat(mixture_file) if mixture_file else None, _stat(tok_path) if tok_path else None)
    return _catalog(mixture_file, spec, strict, stamp)
