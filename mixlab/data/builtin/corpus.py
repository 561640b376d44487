"""The built-in corpus: six domains built on the fly from what every Python install has.

  text         English prose: mostly-prose stdlib docstrings (>= 200 characters) and the pydoc
               help topics (reference-manual prose).
  code         pure code: stdlib modules with docstrings and comments stripped, still valid Python.
  code_text    code mixed with prose: the same modules as they are, docstrings and comments kept.
  math         answer-only problems from `mathgen`: question and final answer.
  math_traces  the same problems with numbered step-by-step worked solutions.
  code_math    the same problems as Python programs that compute and print the answer.

The three math domains hold the same problems in the same order (document i of each is problem i),
so an arm can swap forms at equal tokens. Optional extras (`extra_sources`) add installed sources
when asked for; by default there are none and the corpus does not depend on what is installed.

Splits: a stdlib module goes to `eval` when the hash of its path falls in the lowest 5%, and all its
views follow it, so `code` and `code_text` hold out the same modules and `text` their docstrings.
Math splits by disjoint seed ranges and difficulty (train 1-3; eval 1-5, where 4-5 test
extrapolation). Hygiene (`dedup`): repeats within a split are dropped, then every train document
that is an exact or near duplicate of an eval document of ANY domain is removed and counted; a math
problem is removed from all three math domains at once. `manifest()` records sources, licences,
sizes and these counts.

Nothing is downloaded. A domain is built once (all six take ~5 s on one core) and kept in memory
and in an on-disk cache keyed by the builder's code (`corpus_cache`; MIXLAB_CORPUS_CACHE=off turns
it off), so later processes load it in ~0.1 s. The corpus depends on the Python version's standard
library: compare runs on one Python.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
from collections.abc import Sequence

from mixlab.data import dedup
from mixlab.data.builtin import cache as corpus_cache
from mixlab.data.builtin import extras as extra_sources
from mixlab.data.builtin import mathgen
from mixlab.data.builtin import stdlib as stdlib_sources

DOMAINS = ("text", "code", "code_text", "math", "math_traces", "code_math")
SPLITS = ("train", "eval")
MATH_DOMAINS = tuple(mathgen.DOMAIN_FORMS)
_PSF, _GENERATED = "PSF-2.0", "mixlab-generated, Apache-2.0"
_BUILDER_FILES = (  # relative to mixlab/data/
    "builtin/corpus",
    "builtin/cache",
    "dedup",
    "builtin/extras",
    "builtin/math_algebra",
    "builtin/math_numeric",
    "builtin/math_word",
    "builtin/mathgen",
    "builtin/stdlib",
)


@dataclasses.dataclass(frozen=True)
class Document:
    """A corpus document with where it came from; `key` decides its split."""

    source: str
    key: str
    text: str


@dataclasses.dataclass(frozen=True)
class _Built:
    splits: dict[str, tuple[Document, ...]]
    removed: dict[str, dict[str, int]]  # source -> {"exact": n, "near": n} train documents removed


def _check(domain: str, split: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r} (known: {', '.join(DOMAINS)})")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")


def _sources(domain: str) -> dict[str, dict[str, str]]:
    """Built-in sources of a domain: provenance, licence and path (a glob or a generator)."""
    root, stdlib = stdlib_sources.stdlib_root(), stdlib_sources.provenance()
    modules = {"provenance": stdlib, "licence": _PSF, "path": f"{root}/**/*.py"}
    if domain in MATH_DOMAINS:
        form = mathgen.DOMAIN_FORMS[domain]
        seeds = {
            s: {"seeds": mathgen.SPLIT_SEEDS[s], "difficulties": mathgen.SPLIT_DIFFICULTIES[s]}
            for s in SPLITS
        }
        path = f"generated: mathgen {form} form, families {', '.join(mathgen.FAMILIES)}; {seeds}"
        return {
            f"mathgen_{form}": {
                "provenance": "mixlab.data.builtin.mathgen",
                "licence": _GENERATED,
                "path": path,
            }
        }
    if domain == "text":
        topics = {"provenance": stdlib, "licence": _PSF, "path": f"{root}/pydoc_data/topics.py"}
        return {"stdlib_docstrings": modules, "pydoc_topics": topics}
    return {"stdlib_code" if domain == "code" else "stdlib_source": modules}


def _split_of(key: str) -> str:
    return "eval" if stdlib_sources.is_eval(key) else "train"


@functools.cache
def _raw(domain: str, split: str, extras: tuple[str, ...]) -> tuple[Document, ...]:
    """A split's documents before any deduplication, in a fixed order."""
    if domain in MATH_DOMAINS:
        source = next(iter(_sources(domain)))
        form = mathgen.DOMAIN_FORMS[domain]
        docs = [
            Document(source, f"{p.family}/{p.seed}/{p.difficulty}", mathgen.render(p, form))
            for p in mathgen.split_problems(split)
        ]
    else:
        modules = stdlib_sources.modules(split)
        if domain == "text":
            docs = [Document("stdlib_docstrings", m.path, d) for m in modules for d in m.docstrings]
            docs += [Document("pydoc_topics", k, t) for k, t in stdlib_sources.pydoc_topics()]
        elif domain == "code":
            docs = [Document("stdlib_code", m.path, m.code) for m in modules]
        else:
            docs = [Document("stdlib_source", m.path, m.source) for m in modules]
    for name in extras:
        extra = extra_sources.EXTRAS[name]
        if extra.domain == domain:
            docs += [Document(name, k, t) for k, t in extra_sources.documents(extra)]
    # Generated problems are split by seed already; everything else by the hash of its key.
    return tuple(d for d in docs if _is_generated(d) or _split_of(d.key) == split)


def _unique(docs: Sequence[Document]) -> tuple[Document, ...]:
    """Non-blank documents, the first of each text kept."""
    seen: dict[str, Document] = {}
    for d in docs:
        if d.text.strip():
            seen.setdefault(d.text, d)
    return tuple(seen.values())


def _checked(domain: str, split: str) -> None:
    """Runs the split's programs (once per process) before any `code_math` document is used."""
    if domain == "code_math":
        mathgen.check_programs(split)


@functools.cache
def _eval_docs(domain: str, extras: tuple[str, ...]) -> tuple[Document, ...]:
    _checked(domain, "eval")
    return _unique(_raw(domain, "eval", extras))


@functools.cache
def _eval_index(extras: tuple[str, ...]) -> dedup.EvalIndex:
    """Every domain's eval documents: no train document of any domain may copy one."""
    return dedup.EvalIndex([d.text for domain in DOMAINS for d in _eval_docs(domain, extras)])


def _is_generated(doc: Document) -> bool:
    return doc.source.startswith("mathgen_")


@functools.cache
def _math_verdicts(extras: tuple[str, ...]) -> tuple[str | None, ...]:
    """Per train problem: the worst verdict over its three renderings ("exact" > "near" > None)."""
    index = _eval_index(extras)
    verdicts = [
        index.contaminated([d.text for d in _raw(m, "train", extras) if _is_generated(d)])
        for m in MATH_DOMAINS
    ]
    return tuple(
        "exact" if "exact" in v else "near" if "near" in v else None for v in zip(*verdicts, strict=True)
    )


def _build_now(domain: str, extras: tuple[str, ...]) -> _Built:
    _checked(domain, "train")
    train = _raw(domain, "train", extras)
    removed = {name: {"exact": 0, "near": 0} for name in {d.source for d in train}}
    # Generated problems are unique by question and judged per problem, so the same problems leave
    # all three math domains; other documents are judged one by one.
    generated = [d for d in train if _is_generated(d)]
    others = list(_unique([d for d in train if not _is_generated(d)]))
    verdicts = list(_math_verdicts(extras)) if generated else []
    verdicts += _eval_index(extras).contaminated([d.text for d in others])
    if generated:  # problems whose question eval also asks never got this far
        removed[generated[0].source]["exact"] += mathgen.contamination()["exact"]
    kept = []
    for doc, verdict in zip(generated + others, verdicts, strict=True):
        if verdict:
            removed[doc.source][verdict] += 1
        else:
            kept.append(doc)
    return _Built({"train": tuple(kept), "eval": _eval_docs(domain, extras)}, removed)


def _cache_path(domain: str, extras: tuple[str, ...]) -> str | None:
    directory = corpus_cache.directory(code_version(), stdlib_sources.stdlib_root())
    if directory is None:
        return None
    if not extras:
        return os.path.join(directory, f"{domain}.json")
    # Installed extras can change without the builder changing: key them by their files too.
    files = [(p, os.path.getsize(p), os.path.getmtime(p)) for e in extras for p in _extra_files(e)]
    digest = hashlib.sha256(json.dumps([extras, files]).encode()).hexdigest()[:12]
    return os.path.join(directory, f"{domain}+{'+'.join(extras)}-{digest}.json")


def _extra_files(name: str) -> list[str]:
    return extra_sources.find(extra_sources.EXTRAS[name])[1]


@functools.cache
def _build(domain: str, extras: tuple[str, ...]) -> _Built:
    """A domain's splits, from the on-disk cache when it has them (`corpus_cache`)."""
    path = _cache_path(domain, extras)
    data = corpus_cache.load(path) if path else None
    if data is not None:
        splits = {s: tuple(Document(*d) for d in docs) for s, docs in data["splits"].items()}
        return _Built(splits, data["removed"])
    built = _build_now(domain, extras)
    if path:
        splits = {s: [[d.source, d.key, d.text] for d in docs] for s, docs in built.splits.items()}
        corpus_cache.save(path, {"splits": splits, "removed": built.removed})
    return built


def documents(domain: str, split: str, *, extras: str | Sequence[str] | None = None) -> list[Document]:
    """Like `load_documents`, with each document's source and split key."""
    _check(domain, split)
    return list(_build(domain, extra_sources.parse(extras)).splits[split])


def load_documents(domain: str, split: str, *, extras: str | Sequence[str] | None = None) -> list[str]:
    """Documents of one domain and split, in a fixed order; built on first use, then cached.

    Args:
      domain: one of `DOMAINS`.
      split: "train" or "eval".
      extras: optional sources to add (`extra_sources.EXTRAS` names, or "all"); None reads the
        MIXLAB_CORPUS_EXTRAS environment variable, which is unset by default.
    """
    return [d.text for d in documents(domain, split, extras=extras)]


def _sizes(docs: Sequence[Document]) -> dict[str, int]:
    size = sum(len(d.text.encode("utf-8")) for d in docs)
    # The byte tokenizer gives one token per UTF-8 byte, and the pipeline appends one eos per document.
    return {"documents": len(docs), "bytes": size, "tokens": size + len(docs)}


@functools.cache
def code_version() -> str:
    """Hash of the builder's source files: changes whenever the corpus could."""
    digest = hashlib.sha256()
    for name in _BUILDER_FILES:
        with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), f"{name}.py"), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def manifest(*, extras: str | Sequence[str] | None = None) -> dict:
    """Provenance, licence, per-split sizes and contamination counts of every domain and source."""
    extras = extra_sources.parse(extras)
    domains = {}
    for domain in DOMAINS:
        built = _build(domain, extras)
        sources = {}
        for name, info in _sources(domain).items():
            sources[name] = dict(info, status="used")
        for extra in extra_sources.EXTRAS.values():
            if extra.domain == domain:
                pattern, paths = extra_sources.find(extra)
                status = ("used" if extra.name in extras else "present, not enabled") if paths else "absent"
                sources[extra.name] = {
                    "provenance": extra.provenance,
                    "licence": extra.licence,
                    "path": pattern or " | ".join(extra.patterns),
                    "status": status,
                }
        for name, info in sources.items():
            info["splits"] = {s: _sizes([d for d in built.splits[s] if d.source == name]) for s in SPLITS}
            info["contamination"] = built.removed.get(name, {"exact": 0, "near": 0})
        domains[domain] = {
            "splits": {s: _sizes(built.splits[s]) for s in SPLITS},
            "contamination": {k: sum(r[k] for r in built.removed.values()) for k in ("exact", "near")},
            "sources": sources,
        }
    data = {
        "builder": {
            "python": platform.python_version(),
            "code_version": code_version(),
            "extras": list(extras),
        },
        "splits": {
            "stdlib": f"eval if sha256(module path) % 100 < {stdlib_sources.EVAL_PERCENT}",
            "math": {"seeds": mathgen.SPLIT_SEEDS, "difficulties": mathgen.SPLIT_DIFFICULTIES},
        },
        "dedup": {
            "method": "exact (whitespace-normalised) or overlap coefficient of hashed word shingles",
            "shingle_words": dedup.SHINGLE_WORDS,
            "near_threshold": dedup.NEAR_THRESHOLD,
            "max_eval_docs_per_shingle": dedup.MAX_EVAL_DOCS_PER_SHINGLE,
            "against": "the eval documents of every domain",
        },
        "domains": domains,
    }
    data = json.loads(json.dumps(data))  # tuples become lists: what the written file holds
    directory = corpus_cache.directory(code_version(), stdlib_sources.stdlib_root())
    if directory and not extras:  # beside the cached domains it describes
        corpus_cache.save(os.path.join(directory, "manifest.json"), data)
    return data


def write_manifest(path: str, *, extras: str | Sequence[str] | None = None) -> dict:
    """Writes `manifest()` as JSON to `path`; returns it."""
    data = manifest(extras=extras)
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
    return data
