"""The mixture file (`data.mixture_file`): your own domains, their sources and weights, in one JSON file.

  {"domains": {
     "web":  {"weight": 0.6, "sources": [{"kind": "jsonl", "path": "web/*.jsonl", "field": "text"}]},
     "code": {"weight": 0.3, "sources": [{"kind": "text", "path": "src/**/*.py"},
                                         {"kind": "text", "path": "held_out/*.py", "split": "eval"}]},
     "math": {"weight": 0.1, "sources": [{"kind": "arrayrecord", "path": "prepared/math/*.arrayrecord"}]}}}

It REPLACES the built-in corpus: the domains are the file's, and their ids are their order in the file
(a stable registry for that file: arms never renumber them). Keys:

  weight         base token share (normalised over the domains; 0 keeps a domain for eval and arms only)
  sources        list of {kind, path, field, split}:
    kind         jsonl (one JSON object per line, text in `field`), parquet (text column `field`),
                 text (each file is one document), arrayrecord (pre-tokenized shards written by
                 `python -m experiments.prepare`; their index names the tokenizer)
    path         a glob (`**` recurses), relative to the mixture file's directory; sorted matches
    field        jsonl/parquet only, default "text"
    split        "train" or "eval": the whole source goes there. Absent: text kinds are split by the
                 hash of each document's text (eval_fraction); arrayrecord shards by their file name
                 (train-*/eval-*, as prepare writes them)
  eval_fraction  share of the unsplit documents that go to eval, by sha256 of the text (identical
                 documents land together). Default 0.05 when the domain has no "split": "eval" source,
                 else 0: a domain gets a held-out split unless you turn it off with 0

Unknown keys, a domain defined twice, a negative weight, bad JSON (line and column) are errors naming the
file and the key; paths are checked when the file is read, contents when a domain is first used.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import re
from typing import Any

from mixlab.data.mixture import check_weight

KINDS = ("jsonl", "text", "parquet", "arrayrecord")
SPLITS = ("train", "eval")
TEXT_KINDS = ("jsonl", "text", "parquet")
DEFAULT_EVAL_FRACTION = 0.05
# Names end up in arm strings (remove:D:fill:X, joined by +) and metric names (train/D/loss).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DOMAIN_KEYS, _SOURCE_KEYS = ("weight", "sources", "eval_fraction"), ("kind", "path", "field", "split")


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    kind: str
    path: str  # a glob, absolute
    field: str
    split: str | None
    what: str  # how messages name it: "mixture file F: domains.code.sources[0]"


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    name: str
    weight: float
    sources: tuple[SourceSpec, ...]
    eval_fraction: float


@dataclasses.dataclass(frozen=True)
class MixtureFile:
    path: str
    domains: tuple[DomainSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.domains)

    @property
    def weights(self) -> dict[str, float]:
        return {d.name: d.weight for d in self.domains}

    def domain(self, name: str) -> DomainSpec:
        return self.domains[self.names.index(name)]


class _Object(dict):
    """A JSON object that remembers keys it saw twice (json.load keeps the last silently)."""

    duplicates: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    seen: set[str] = set()
    obj.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


def _object(value: Any, what: str, keys: tuple[str, ...] | None = None) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, not {json.dumps(value)[:60]}")
    if getattr(value, "duplicates", ()):
        raise ValueError(f"{what}: key {value.duplicates[0]!r} appears twice")
    if keys is not None and (unknown := [k for k in value if k not in keys]):
        raise ValueError(f"{what}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")
    return value


def _source(raw: Any, base: str, what: str) -> SourceSpec:
    raw = _object(raw, what, _SOURCE_KEYS)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{what}.kind = {kind!r}: unknown kind (known: {', '.join(KINDS)})")
    path = raw.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError(f"{what}.path = {path!r} must be a non-empty string (a file or a glob)")
    if "field" in raw and kind not in ("jsonl", "parquet"):
        raise ValueError(f"{what}.field: only jsonl and parquet sources have a field, not {kind!r}")
    field = raw.get("field", "text")
    if not isinstance(field, str) or not field:
        raise ValueError(f"{what}.field = {field!r} must be a non-empty string")
    split = raw.get("split")
    if split is not None and split not in SPLITS:
        raise ValueError(f"{what}.split = {split!r}: expected one of {', '.join(SPLITS)}")
    return SourceSpec(kind, os.path.join(base, os.path.expanduser(path)), field, split, what)


def _domain(name: str, raw: Any, base: str, what: str) -> DomainSpec:
    if not _NAME.match(name):
        raise ValueError(f"{what}: domain name {name!r} must be letters, digits, '_', '.', '-'")
    raw = _object(raw, f"{what}.{name}", _DOMAIN_KEYS)
    if "weight" not in raw:
        raise ValueError(f"{what}.{name}: no weight (give 0 to keep it for eval and arms only)")
    weight = check_weight(raw["weight"], what=f"{what}.{name}.weight")
    sources = raw.get("sources")
    if not isinstance(sources, list) or not sources:
        raise ValueError(f"{what}.{name}.sources = {sources!r} must be a non-empty list of sources")
    specs = tuple(_source(s, base, f"{what}.{name}.sources[{i}]") for i, s in enumerate(sources))
    has_eval = any(s.split == "eval" for s in specs)
    fraction = raw.get("eval_fraction", 0.0 if has_eval else DEFAULT_EVAL_FRACTION)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 <= fraction < 1:
        raise ValueError(f"{what}.{name}.eval_fraction = {fraction!r} must be a number in [0, 1)")
    return DomainSpec(name, weight, specs, float(fraction))


def parse(text: str, path: str) -> MixtureFile:
    """A mixture file's contents -> MixtureFile; relative paths are taken from `path`'s directory."""
    what = f"mixture file {path}"
    try:
        data = json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} is not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    data = _object(data, what, ("domains",))
    domains = data.get("domains")
    if isinstance(domains, dict) and getattr(domains, "duplicates", ()):
        raise ValueError(f"{what}: domain {domains.duplicates[0]!r} is defined twice")
    domains = _object(domains, f"{what}: domains")
    if not domains:
        raise ValueError(f"{what}: domains is empty; define at least one domain")
    base = os.path.dirname(os.path.abspath(path))
    return MixtureFile(
        os.path.abspath(path),
        tuple(_domain(n, d, base, f"{what}: domains") for n, d in domains.items()),
    )


def load(path: str) -> MixtureFile:
    """Reads and validates a mixture file (see the module docstring)."""
    try:
        with open(os.path.expanduser(path), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ValueError(f"data.mixture_file = {path!r}: file not found") from None
    except OSError as e:
        raise ValueError(f"data.mixture_file = {path!r}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"mixture file {path} is not UTF-8 (byte {e.start})") from None
    return parse(text, os.path.expanduser(path))
