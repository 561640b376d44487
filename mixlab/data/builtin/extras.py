"""Optional corpus sources: used only when installed on disk *and* asked for.

Ask with the environment variable MIXLAB_CORPUS_EXTRAS (comma-separated names, or "all") or the
`extras=` argument of `corpus.load_documents`. A source that is asked for but not installed is
skipped silently and reported "absent" in the manifest; the default corpus (no extras) never
depends on what is installed. Each source is capped at MAX_SOURCE_BYTES, taken in hash order of its
split keys, so it stays small beside the built-in domains.

  name              domain        Debian package         licence
  python_docs_rst   text          python3.11-doc         PSF-2.0
  metamath_setmm    math_traces   metamath-databases     CC0-1.0
  coq_stdlib        math_traces   libcoq-stdlib          LGPL-2.1
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
from collections.abc import Callable

MAX_SOURCE_BYTES = 2_000_000
MIN_DOC_BYTES = 500
SETMM_CHUNK_BYTES = 4_000  # set.mm is one 40 MB file: cut at blank lines into documents of ~4 KB


@dataclasses.dataclass(frozen=True)
class Extra:
    """An optional source; `read` maps the matched files to (split key, text) documents."""

    name: str
    domain: str
    provenance: str
    licence: str
    patterns: tuple[str, ...]  # globs, tried in order; the first that matches anything is used
    read: Callable[[list[str]], list[tuple[str, str]]]


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _per_file(root_marker: str) -> Callable[[list[str]], list[tuple[str, str]]]:
    """One document per file, keyed by its path below `root_marker` (stable across installs)."""

    def read(paths: list[str]) -> list[tuple[str, str]]:
        docs = []
        for path in paths:
            key = path.split(root_marker, 1)[-1].lstrip("/")
            docs.append((key, _read_text(path)))
        return docs

    return read


def _read_setmm(paths: list[str]) -> list[tuple[str, str]]:
    text = _read_text(paths[0])[: 4 * MAX_SOURCE_BYTES]  # the cap below keeps half of this
    docs, chunk = [], []
    for paragraph in text.split("\n\n"):
        chunk.append(paragraph)
        if sum(map(len, chunk)) >= SETMM_CHUNK_BYTES:
            docs.append((f"set.mm#{len(docs)}", "\n\n".join(chunk) + "\n"))
            chunk = []
    return docs


EXTRAS = {
    e.name: e
    for e in (
        Extra(
            "python_docs_rst",
            "text",
            "Python documentation reST sources",
            "PSF-2.0",
            (
                "/usr/share/doc/python3*/html/_sources/**/*.rst.txt",
                "/usr/share/doc/python3*/html/_sources/**/*.txt",
            ),
            _per_file("_sources"),
        ),
        Extra(
            "metamath_setmm",
            "math_traces",
            "Metamath set.mm database",
            "CC0-1.0",
            ("/usr/share/metamath/set.mm", "/usr/share/metamath-databases/set.mm"),
            _read_setmm,
        ),
        Extra(
            "coq_stdlib",
            "math_traces",
            "Coq standard library .v sources",
            "LGPL-2.1",
            (
                "/usr/lib/ocaml/coq/theories/**/*.v",
                "/usr/lib/coq/theories/**/*.v",
                "/usr/share/coq/theories/**/*.v",
            ),
            _per_file("theories"),
        ),
    )
}


def parse(names: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """Sorted extras asked for: a tuple, or a comma-separated string ('all' for every one)."""
    if names is None:
        names = os.environ.get("MIXLAB_CORPUS_EXTRAS", "")
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if "all" in names:
        return tuple(sorted(EXTRAS))
    for name in names:
        if name not in EXTRAS:
            raise ValueError(f"unknown corpus extra {name!r} (known: all, {', '.join(EXTRAS)})")
    return tuple(sorted(set(names)))


def find(extra: Extra) -> tuple[str, list[str]]:
    """(the glob that matched, its files sorted) or ("", []) if the source is not installed."""
    for pattern in extra.patterns:
        paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if paths:
            return pattern, paths
    return "", []


def documents(extra: Extra) -> list[tuple[str, str]]:
    """(split key, text) of an installed source, capped at MAX_SOURCE_BYTES in hash order."""
    _, paths = find(extra)
    docs = [(k, t) for k, t in extra.read(paths) if len(t.encode()) >= MIN_DOC_BYTES] if paths else []
    docs.sort(key=lambda kt: hashlib.sha256(kt[0].encode()).digest())
    kept, total = [], 0
    for key, text in docs:
        size = len(text.encode())
        if total + size <= MAX_SOURCE_BYTES:
            kept.append((key, text))
            total += size
    return kept
