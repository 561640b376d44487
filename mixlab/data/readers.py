"""Reading a mixture file's text sources (jsonl, text, parquet) into documents, counting every skip.

Every problem names its source: the glob that matches nothing, the file:line of a jsonl line that is not
JSON or lacks the field, the parquet file without the column. Documents that are not valid UTF-8 (or
hold lone surrogates, which no tokenizer can encode) are skipped and counted, or an error when
`data.strict_utf8`; empty documents are skipped and counted. Blank jsonl lines are not documents.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Iterator

from mixlab.data.mixfile import SourceSpec

_EXAMPLES = 3  # skipped documents named per source in the manifest


@dataclasses.dataclass
class SourceStats:
    """What one source gave: its files, documents kept, and what was skipped (with a few examples)."""

    path: str
    kind: str
    files: int = 0
    documents: int = 0
    bytes: int = 0
    skipped_invalid_utf8: int = 0
    skipped_empty: int = 0
    skipped_examples: list[str] = dataclasses.field(default_factory=list)

    def skip(self, reason: str, where: str) -> None:
        if reason == "invalid_utf8":
            self.skipped_invalid_utf8 += 1
        else:
            self.skipped_empty += 1
        if len(self.skipped_examples) < _EXAMPLES:
            self.skipped_examples.append(f"{where} ({reason})")

    @property
    def skipped(self) -> int:
        return self.skipped_invalid_utf8 + self.skipped_empty


def files(spec: SourceSpec) -> list[str]:
    """The sorted files a source's glob matches; a ValueError naming it when there are none."""
    matches = sorted(p for p in glob.glob(spec.path, recursive=True) if os.path.isfile(p))
    if not matches:
        raise ValueError(f"{spec.what}: path {spec.path!r} matches no files")
    return matches


def _valid(text: str) -> bool:
    try:
        text.encode("utf-8")  # lone surrogates (from "\ud800" escapes) fail here
    except UnicodeEncodeError:
        return False
    return True


def _decode(raw: bytes, where: str, stats: SourceStats, strict: bool) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if strict:
            raise ValueError(f"{where}: invalid UTF-8 at byte {e.start} (data.strict_utf8 = True)") from None
        stats.skip("invalid_utf8", where)
        return None
    return text


def _keep(text: str | None, where: str, stats: SourceStats, strict: bool) -> bool:
    if text is None:
        return False
    if not _valid(text):
        if strict:
            raise ValueError(f"{where}: text holds lone surrogates, not UTF-8 (data.strict_utf8 = True)")
        stats.skip("invalid_utf8", where)
        return False
    if not text:
        stats.skip("empty", where)
        return False
    return True


def _jsonl(path: str, spec: SourceSpec, stats: SourceStats, strict: bool) -> Iterator[tuple[str, str]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}:{number}"
            if not raw.strip():
                continue
            line = _decode(raw, where, stats, strict)
            if line is None:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{spec.what}: {where}: not valid JSON ({e.msg}, column {e.colno})"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(f"{spec.what}: {where}: a {type(record).__name__}, not a JSON object")
            if spec.field not in record:
                keys = ", ".join(list(record)[:8]) or "none"
                raise ValueError(f"{spec.what}: {where}: no field {spec.field!r} (keys: {keys})")
            text = record[spec.field]
            if not isinstance(text, str):
                raise ValueError(
                    f"{spec.what}: {where}: field {spec.field!r} is a {type(text).__name__}, not a string"
                )
            if _keep(text, where, stats, strict):
                yield where, text


def _text(path: str, spec: SourceSpec, stats: SourceStats, strict: bool) -> Iterator[tuple[str, str]]:
    with open(path, "rb") as f:
        text = _decode(f.read(), path, stats, strict)
    if _keep(text, path, stats, strict):
        yield path, text


def _parquet(path: str, spec: SourceSpec, stats: SourceStats, strict: bool) -> Iterator[tuple[str, str]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"{spec.what}: kind 'parquet' needs pyarrow (pip install pyarrow)") from None
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{spec.what}: {path} is not a readable parquet file: {e}") from None
    if spec.field not in schema.names:
        raise ValueError(
            f"{spec.what}: {path}: no column {spec.field!r} (columns: {', '.join(schema.names)})"
        )
    column_type = schema.field(spec.field).type
    is_binary = pa.types.is_binary(column_type) or pa.types.is_large_binary(column_type)
    if not (is_binary or pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise ValueError(f"{spec.what}: {path}: column {spec.field!r} is {column_type}, not text")
    values = pq.read_table(path, columns=[spec.field]).column(0).to_pylist()
    for row, value in enumerate(values):
        where = f"{path}#row{row}"
        text = _decode(value, where, stats, strict) if is_binary and value is not None else value
        if value is None:
            stats.skip("empty", where)  # a null is a missing document: counted with the empty ones
        elif _keep(text, where, stats, strict):
            yield where, text


_READERS = {"jsonl": _jsonl, "text": _text, "parquet": _parquet}


def read(spec: SourceSpec, *, strict_utf8: bool) -> tuple[list[tuple[str, str]], SourceStats]:
    """(where, text) of every document of a text source, in file order, and its stats."""
    stats = SourceStats(spec.path, spec.kind)
    docs = []
    for path in files(spec):
        stats.files += 1
        try:
            docs.extend(_READERS[spec.kind](path, spec, stats, strict_utf8))
        except OSError as e:
            raise ValueError(f"{spec.what}: cannot read {path}: {e.strerror}") from None
    if not docs:
        raise ValueError(
            f"{spec.what}: {spec.path!r} has no documents ({stats.files} files; skipped "
            f"{stats.skipped_invalid_utf8} invalid UTF-8, {stats.skipped_empty} empty)"
        )
    stats.documents = len(docs)
    stats.bytes = sum(len(t.encode("utf-8")) for _, t in docs)
    return docs, stats
