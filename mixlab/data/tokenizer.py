"""Tokenizers: byte-level by default, or a byte-level BPE trained offline on the run's own domains.

The contract every tokenizer keeps (packing, the loss mask and bits-per-byte rely on it):
  pad 0, bos 1, eos 2; every other id is real text.
  encode(text) -> int32 ids, no specials added.  decode(ids) -> text, specials dropped.
  num_bytes(ids) -> UTF-8 bytes the non-special ids stand for: the denominator of bits per byte, so bpb
    compares runs with different tokenizers.
  to_dict() / from_dict(): a JSON description complete enough to rebuild it (WORKDIR/tokenizer.json).

`data.tokenizer` names one: "bytes" (default) or "bpe:PATH", PATH a file written by
`python -m experiments.prepare --train_tokenizer bpe` (or any WORKDIR/tokenizer.json, or a plain HF
`tokenizers` JSON with the three specials at ids 0-2). Bytes keep the first version free of any trained
vocabulary: every non-special token is exactly one UTF-8 byte.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

SPECIALS = ("<|pad|>", "<|bos|>", "<|eos|>")  # ids 0, 1, 2 in every tokenizer


class ByteTokenizer:
    """UTF-8 bytes shifted by 3; pad 0, bos 1, eos 2; 259 ids in all."""

    name: ClassVar[str] = "bytes"
    pad_id: ClassVar[int] = 0
    bos_id: ClassVar[int] = 1
    eos_id: ClassVar[int] = 2
    offset: ClassVar[int] = 3
    vocab_size: ClassVar[int] = 256 + 3
    fingerprint: ClassVar[str] = "bytes"

    def encode(self, text: str) -> np.ndarray:
        """UTF-8 bytes of `text` as int32 ids, no specials added."""
        # One vectorised op per document: per-character Python would dominate the pipeline's cost.
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + self.offset

    def decode(self, ids: Any) -> str:
        """Text of the byte tokens in `ids`; specials are dropped, broken UTF-8 becomes U+FFFD."""
        ids = np.asarray(ids).reshape(-1)
        byte_ids = ids[ids >= self.offset] - self.offset
        return byte_ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def num_bytes(self, ids: Any) -> int:
        """Number of byte (non-special) tokens in `ids`: the denominator of bits per byte."""
        return int(np.count_nonzero(np.asarray(ids) >= self.offset))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description, saved beside checkpoints."""
        return {"name": self.name, "vocab_size": self.vocab_size}

    def summary(self) -> dict[str, Any]:
        """What identifies it (recorded in prepared shards' index)."""
        return {"name": self.name, "vocab_size": self.vocab_size, "sha256": self.fingerprint}

    def describe(self) -> str:
        return "bytes"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ByteTokenizer:
        """Inverse of `to_dict`; raises ValueError on another tokenizer's description."""
        if d.get("name") != cls.name:
            raise ValueError(f"unknown tokenizer {d.get('name')!r} (known: {cls.name!r})")
        if d.get("vocab_size", cls.vocab_size) != cls.vocab_size:
            raise ValueError(f"tokenizer 'bytes' has vocab_size {cls.vocab_size}, got {d['vocab_size']}")
        return cls()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return "ByteTokenizer()"


def _canonical(hf: Mapping[str, Any]) -> str:
    return json.dumps(hf, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class BPETokenizer:
    """A byte-level BPE (HF `tokenizers`): any text round-trips exactly, specials at ids 0-2.

    Args:
      hf: the HF tokenizer as its JSON object (what `Tokenizer.to_str()` gives).
      path: where it was read from, for messages only (not part of its identity).
    """

    name: ClassVar[str] = "bpe"
    pad_id: ClassVar[int] = 0
    bos_id: ClassVar[int] = 1
    eos_id: ClassVar[int] = 2

    def __init__(self, hf: Mapping[str, Any], *, path: str = ""):
        from tokenizers import Tokenizer  # optional dependency: only BPE runs need it

        self._hf, self.path = dict(hf), path
        what = f"BPE tokenizer {path or '(in memory)'}"
        try:
            self._tok = Tokenizer.from_str(json.dumps(self._hf))
        except Exception as e:  # the Rust side raises a bare Exception on any malformed field
            raise ValueError(f"{what} is not a valid HF tokenizers file: {e}") from None
        # Text that happens to contain "<|eos|>" must stay text: an eos inside a document would end it.
        self._tok.encode_special_tokens = True
        for i, special in enumerate(SPECIALS):
            if self._tok.token_to_id(special) != i:
                raise ValueError(f"{what}: special {special!r} must have id {i} (pad, bos, eos)")
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.fingerprint = hashlib.sha256(_canonical(self._hf).encode()).hexdigest()[:16]
        # Bytes per id: a byte-level token is one character per byte, so bpb needs no decoding.
        table = np.zeros((self.vocab_size,), np.int64)
        for token, i in self._tok.get_vocab(with_added_tokens=True).items():
            table[i] = 0 if token in SPECIALS else len(token)
        self._bytes = table

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, np.int32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """`encode` of many documents at once (the Rust side uses every core)."""
        out = self._tok.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, np.int32) for e in out]

    def decode(self, ids: Any) -> str:
        ids = np.asarray(ids).reshape(-1)
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def num_bytes(self, ids: Any) -> int:
        """UTF-8 bytes of the decoded non-special ids (a sum over a per-id table, any shape)."""
        return int(self._bytes[np.asarray(ids, np.int64)].sum())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vocab_size": self.vocab_size, "sha256": self.fingerprint, "hf": self._hf}

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "vocab_size": self.vocab_size, "sha256": self.fingerprint}

    def describe(self) -> str:
        where = f", from {self.path}" if self.path else ""
        return f"bpe (vocab {self.vocab_size}, sha256 {self.fingerprint}{where})"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, path: str = "") -> BPETokenizer:
        if d.get("name") != cls.name or not isinstance(d.get("hf"), Mapping):
            raise ValueError(f"not a mixlab BPE tokenizer description: keys {sorted(d)}")
        tok = cls(d["hf"], path=path)
        if d.get("sha256", tok.fingerprint) != tok.fingerprint:
            raise ValueError(f"BPE tokenizer {path}: sha256 {d['sha256']} does not match its content")
        return tok

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPETokenizer) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"BPETokenizer({self.describe()})"


Tokenizer = ByteTokenizer | BPETokenizer


def from_dict(d: Mapping[str, Any], *, path: str = "") -> Tokenizer:
    """Any tokenizer from its `to_dict()` (WORKDIR/tokenizer.json)."""
    if d.get("name") == BPETokenizer.name:
        return BPETokenizer.from_dict(d, path=path)
    if d.get("name") == ByteTokenizer.name:
        return ByteTokenizer.from_dict(d)
    raise ValueError(f"unknown tokenizer {d.get('name')!r} in {path or 'description'} (known: bytes, bpe)")


def load_file(path: str) -> Tokenizer:
    """A tokenizer file: mixlab's `to_dict()` form or a plain HF `tokenizers` JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"tokenizer file {path} not found") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"tokenizer file {path} is unreadable or not JSON: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"tokenizer file {path} holds a {type(d).__name__}, not a JSON object")
    return from_dict(d, path=path) if "name" in d else BPETokenizer(d, path=path)


def from_spec(spec: Any) -> Tokenizer:
    """`data.tokenizer` -> a tokenizer: "bytes" or "bpe:PATH" (PATH relative to the working directory)."""
    if spec in ("bytes", "", None):
        return ByteTokenizer()
    if isinstance(spec, str) and spec.startswith("bpe:") and spec[4:]:
        path = os.path.expanduser(spec[4:])
        tok = load_file(path)
        if not isinstance(tok, BPETokenizer):
            raise ValueError(f"data.tokenizer = {spec!r}: {path} describes a {tok.name!r} tokenizer, not bpe")
        return tok
    raise ValueError(f"data.tokenizer = {spec!r}: expected 'bytes' or 'bpe:PATH'")


def check_same(saved: Tokenizer, wanted: Tokenizer, *, saved_what: str, wanted_what: str) -> None:
    """A ValueError naming both when two tokenizers differ (ids would mean different text)."""
    if saved != wanted:
        raise ValueError(
            f"tokenizer mismatch: {saved_what} uses {saved.describe()}, but {wanted_what} asks "
            f"{wanted.describe()}; token ids of one are meaningless to the other"
        )


WORKDIR_FILE = "tokenizer.json"


def load_workdir(workdir: str) -> Tokenizer | None:
    """The tokenizer a training workdir was trained with (None when it has no tokenizer.json yet)."""
    path = os.path.join(workdir, WORKDIR_FILE)
    return load_file(path) if os.path.exists(path) else None


def check_workdir(workdir: str, tokenizer: Tokenizer) -> None:
    """Refuses to train (resume) in a workdir made with another tokenizer."""
    saved = load_workdir(workdir)
    if saved is not None:
        check_same(
            saved,
            tokenizer,
            saved_what=f"workdir {workdir} ({WORKDIR_FILE})",
            wanted_what="the config (data.tokenizer)",
        )
