"""Byte-level tokenizer: ids 0-2 are specials, byte b is id b + 3.

Bytes keep the first version free of any trained vocabulary (nothing to download, nothing to keep in
sync across arms) and make bits-per-byte trivial: every non-special token is exactly one UTF-8 byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np


class ByteTokenizer:
    """UTF-8 bytes shifted by 3; pad 0, bos 1, eos 2; 259 ids in all."""

    name: ClassVar[str] = "bytes"
    pad_id: ClassVar[int] = 0
    bos_id: ClassVar[int] = 1
    eos_id: ClassVar[int] = 2
    offset: ClassVar[int] = 3
    vocab_size: ClassVar[int] = 256 + 3

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
