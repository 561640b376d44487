"""Documents from the running Python's standard library: modules, docstrings, pydoc topics.

One read of each module gives three views, so `code`, `code_text` and `text` come from the same
modules and hold out the same ones:

  source      the file as it is, docstrings and comments kept             (domain `code_text`)
  code        docstrings removed through the AST and unparsed, so the      (domain `code`)
              comments go too; still valid Python
  docstrings  the mostly-prose docstrings (>= 200 characters)              (domain `text`)

Only documented modules are used (at least one docstring or comment), so every `code_text`
document carries prose that its `code` twin lacks.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import functools
import hashlib
import inspect
import os
import platform
import sysconfig
import warnings

EVAL_PERCENT = 5
MAX_FILE_BYTES = 200_000  # one module should not dominate a domain (3.11 skips only _pydecimal)
# Parsing and unparsing run at ~2 MB/s on one core: all ~8.6 MB of non-test stdlib would take
# ~4.5 s per process. Train modules are taken in hash order up to this budget, so the sample spans
# the whole stdlib rather than its alphabetical prefix. Eval modules are always all read (~0.5 MB),
# so the eval set does not move when the budget does.
MAX_TRAIN_SOURCE_BYTES = 3_000_000
MIN_DOCSTRING_CHARS = 200
MIN_PROSE_FRACTION = 0.85  # letters, spaces and sentence punctuation; drops tables and doctests

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
class Module:
    """One stdlib module in its three views; `path` (relative, '/'-separated) is the split key."""

    path: str
    source: str
    code: str
    docstrings: tuple[str, ...]


def stdlib_root() -> str:
    return sysconfig.get_paths()["stdlib"]


def provenance() -> str:
    return f"CPython {platform.python_version()} stdlib"


def is_eval(key: str) -> bool:
    """Whether a split key (a module path) is held out; sha256, stable across processes."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 100 < EVAL_PERCENT


def _stdlib_files() -> list[tuple[str, str]]:
    """(relative, absolute path) of the modules to read: every eval one, train ones to budget."""
    root = stdlib_root()
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
        if is_eval(rel):
            chosen.append((rel, path))
        elif total + size <= MAX_TRAIN_SOURCE_BYTES:  # else a smaller file later may still fit
            chosen.append((rel, path))
            total += size
    return chosen


def is_prose(doc: str) -> bool:
    if len(doc) < MIN_DOCSTRING_CHARS:
        return False
    prose = sum(c.isalpha() or c in _PROSE_CHARS for c in doc)
    return prose >= MIN_PROSE_FRACTION * len(doc)


def _definitions(tree: ast.Module) -> list[ast.AST]:
    """Module, classes and functions in ast.walk's order, visiting statement lists only: docstrings
    live nowhere else, and skipping the expressions makes this ~10x faster than ast.walk."""
    found, queue = [], collections.deque([tree])
    while queue:
        node = queue.popleft()
        if isinstance(node, _DOC_NODES):
            found.append(node)
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, field, None)
            if isinstance(children, list):
                queue.extend(children)
    return found


def _strip_docstrings(tree: ast.Module) -> list[str]:
    """Removes docstrings from `tree` in place; returns them, cleaned."""
    docs = []
    for node in _definitions(tree):
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


def _has_comment(source: str) -> bool:
    # A line starting with '#' is a comment (a string can hold such a line, but then the module is
    # documented enough anyway); tokenize would be exact but is ~10x slower than parsing.
    return any(line.lstrip().startswith("#") for line in source.splitlines())


def read_module(rel: str, path: str) -> Module | None:
    """The three views of one file; None if it is not UTF-8, does not parse, or has no prose."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        source = raw.decode("utf-8")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old modules
            tree = ast.parse(source, filename=rel)
        docs = _strip_docstrings(tree)
        code = ast.unparse(tree)  # comments are not in the AST, so they go too
    except (UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
        return None
    if not docs and not _has_comment(source):
        return None  # nothing for `code_text` to keep that `code` drops
    source = source if source.endswith("\n") else source + "\n"
    return Module(rel, source, code + "\n", tuple(d for d in docs if is_prose(d)))


@functools.cache
def modules(split: str) -> tuple[Module, ...]:
    """The modules of "train" or "eval", in hash order; read and parsed once per process (train
    ~2 s, eval ~0.3 s)."""
    files = [(rel, path) for rel, path in _stdlib_files() if is_eval(rel) == (split == "eval")]
    found: dict[str, Module] = {}
    for rel, path in files:
        m = read_module(rel, path)
        # A module whose stripped code is empty or repeats another's (package __init__ files) would
        # be in `code_text` but not `code`: skip it, so both domains hold the same modules.
        if m is not None and m.code.strip():
            found.setdefault(m.code, m)
    return tuple(found.values())


def pydoc_topics() -> list[tuple[str, str]]:
    """(split key, text) of the pydoc help topics: reference-manual prose shipped with CPython."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        return []
    return [(f"pydoc_data/topics/{k}", inspect.cleandoc(v)) for k, v in sorted(topics.items())]
