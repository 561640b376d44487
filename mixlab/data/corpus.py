"""The built-in corpus: three domains built on the fly from what every Python install has.

  text  English prose: the mostly-prose docstrings (>= 200 characters) of standard-library modules,
        classes and functions, and the pydoc help topics.
  code  standard-library modules with docstrings and comments stripped, still valid Python.
  math  generated arithmetic problems with exact answers (`mathgen`).

Nothing is downloaded and nothing is written to disk: a domain is built once per process (~1-3 s)
and cached. The corpus depends on the Python version's standard library: compare runs on one Python.

Splits: a stdlib module (and every docstring in it) goes to `eval` when the hash of its path falls
in the lowest 5%; math splits by disjoint problem-seed ranges. Documents are deduplicated and no
`eval` document appears in `train`, checked by content.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import os
import sysconfig
import warnings

from mixlab.data import mathgen

DOMAINS = ("text", "code", "math")
SPLITS = ("train", "eval")

EVAL_PERCENT = 5
MAX_FILE_BYTES = 200_000  # one module should not dominate a domain (3.11 skips only _pydecimal)
# Parsing and unparsing run at ~2 MB/s on one core: all ~8.6 MB of non-test stdlib would take
# ~4.5 s per process. Train modules are taken in hash order up to this budget, so the sample spans
# the whole stdlib rather than its alphabetical prefix. Eval modules are always all read (~0.5 MB),
# so the eval set does not move when the budget does.
MAX_TRAIN_SOURCE_BYTES = 3_000_000
MIN_DOCSTRING_CHARS = 200
MIN_PROSE_FRACTION = 0.85  # letters, spaces and sentence punctuation; drops tables and doctests

MATH_SEEDS = {"train": (0, 20_000), "eval": (1_000_000, 1_000)}  # (first seed, count): disjoint

# Directories that are tests, tools, vendored or generated data rather than library code.
_SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "turtledemo",
        "encodings",  # codec tables
        "ensurepip",
        "__phello__",
        "pydoc_data",  # used for `text` through its topics, not as code
    }
)
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_PROSE_CHARS = frozenset(" \n\t.,;:'\"()-")


@dataclasses.dataclass(frozen=True)
class _Module:
    path: str  # relative to the stdlib root, "/"-separated: the split key
    docstrings: tuple[str, ...]
    code: str


def _is_eval(key: str) -> bool:
    """Stable across processes and Python versions, unlike hash()."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 100 < EVAL_PERCENT


def _check(domain: str, split: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r} (known: {', '.join(DOMAINS)})")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")


def _stdlib_files() -> list[tuple[str, str]]:
    """(relative, absolute path) of the modules to read: every eval one, train ones to budget."""
    root = sysconfig.get_paths()["stdlib"]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(("config-", "."))]
        for name in filenames:
            if name.endswith(".py") and not name.startswith("_sysconfigdata"):
                path = os.path.join(dirpath, name)
                size = os.path.getsize(path)
                if size <= MAX_FILE_BYTES:
                    rel = os.path.relpath(path, root).replace(os.sep, "/")
                    found.append((hashlib.sha256(rel.encode()).hexdigest(), rel, path, size))
    chosen, total = [], 0
    for _, rel, path, size in sorted(found):
        if _is_eval(rel):
            chosen.append((rel, path))
        elif total + size <= MAX_TRAIN_SOURCE_BYTES:  # else a smaller file later may still fit
            chosen.append((rel, path))
            total += size
    return chosen


def _is_prose(doc: str) -> bool:
    if len(doc) < MIN_DOCSTRING_CHARS:
        return False
    prose = sum(c.isalpha() or c in _PROSE_CHARS for c in doc)
    return prose >= MIN_PROSE_FRACTION * len(doc)


def _strip_docstrings(tree: ast.Module) -> list[str]:
    """Removes docstrings from `tree` in place; returns them, cleaned."""
    docs = []
    for node in [n for n in ast.walk(tree) if isinstance(n, _DOC_NODES)]:
        body = node.body
        first = body[0] if body else None
        if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)):
            continue
        if isinstance(first.value.value, str):
            docs.append(inspect.cleandoc(first.value.value))
            del body[0]
            if not body:  # a def whose body was only its docstring
                body.append(ast.Pass())
    return docs


def _read_module(rel: str, path: str) -> _Module | None:
    with open(path, "rb") as f:
        source = f.read()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old modules
            tree = ast.parse(source, filename=rel)
        docs = _strip_docstrings(tree)
        code = ast.unparse(tree)  # comments are not in the AST, so they go too
    except (SyntaxError, ValueError, RecursionError):
        return None
    return _Module(rel, tuple(d for d in docs if _is_prose(d)), code + "\n")


@functools.cache
def _stdlib_modules() -> tuple[_Module, ...]:
    modules = (_read_module(rel, path) for rel, path in _stdlib_files())
    return tuple(m for m in modules if m is not None)


def _pydoc_topics() -> list[tuple[str, str]]:
    """(split key, text) of the pydoc help topics: reference-manual prose shipped with CPython."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        return []
    return [(f"pydoc_data/topics/{k}", inspect.cleandoc(v)) for k, v in sorted(topics.items())]


def _dedup_splits(pairs: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """Groups (split, text) pairs; drops empty texts, repeats, and any train text also in eval."""
    splits: dict[str, dict[str, None]] = {"train": {}, "eval": {}}  # dicts: ordered sets
    for split, text in pairs:
        if text.strip():
            splits[split].setdefault(text, None)
    eval_docs = splits["eval"]
    return {
        "train": tuple(t for t in splits["train"] if t not in eval_docs),
        "eval": tuple(eval_docs),
    }


@functools.cache
def _build(domain: str) -> dict[str, tuple[str, ...]]:
    if domain == "math":
        splits = {s: mathgen.documents(*MATH_SEEDS[s]) for s in SPLITS}
        return _dedup_splits([(s, d) for s in SPLITS for d in splits[s]])
    keyed = [(m.path, m.code) for m in _stdlib_modules()]
    if domain == "text":  # docstrings follow their module into its split
        keyed = [(m.path, d) for m in _stdlib_modules() for d in m.docstrings] + _pydoc_topics()
    return _dedup_splits([("eval" if _is_eval(k) else "train", t) for k, t in keyed])


def load_documents(domain: str, split: str) -> list[str]:
    """Documents of one domain and split, in a fixed order; built on first use, then cached.

    Args:
      domain: one of `DOMAINS`.
      split: "train" or "eval".
    """
    _check(domain, split)
    return list(_build(domain)[split])
