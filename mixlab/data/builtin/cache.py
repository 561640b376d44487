"""On-disk cache of built corpus domains, so a process reads JSON (~0.1 s) instead of rebuilding (~5 s).

Location: $MIXLAB_CORPUS_CACHE (default ~/.cache/mixlab), then `corpus-<python version>-<key>/`,
where the key hashes the builder's source files, the full Python version string and the stdlib
path: editing the builder, or another Python, gives a new directory and never a stale corpus.
MIXLAB_CORPUS_CACHE=off disables it. Files are written to a temporary name and renamed, so parallel
processes (pytest-xdist) at worst build the same thing twice; an unreadable file is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from typing import Any

CACHE_ENV = "MIXLAB_CORPUS_CACHE"
KEEP = 3
_OFF = ("off", "0", "false", "none")


def directory(code_version: str, stdlib_root: str) -> str | None:
    """The cache directory of this builder and Python, or None when caching is off."""
    root = os.environ.get(CACHE_ENV, os.path.join(os.path.expanduser("~"), ".cache", "mixlab"))
    if root.strip().lower() in _OFF:
        return None
    key = hashlib.sha256(f"{code_version}\n{sys.version}\n{stdlib_root}".encode()).hexdigest()[:16]
    return os.path.join(root, f"corpus-{platform.python_version()}-{key}")


def load(path: str) -> Any | None:
    """The JSON at `path`, or None if it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _prune(directory: str) -> None:
    """Keeps the KEEP newest sibling corpus directories: each builder edit starts a new ~20 MB one."""
    root = os.path.dirname(directory)
    siblings = [os.path.join(root, d) for d in os.listdir(root) if d.startswith("corpus-")]
    for old in sorted(siblings, key=os.path.getmtime, reverse=True)[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)  # a reader of it just rebuilds


def save(path: str, data: Any) -> None:
    """Writes `data` as JSON atomically; a read-only or full disk only costs a rebuild later."""
    tmp = None
    try:
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _prune(os.path.dirname(path))
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
        os.replace(tmp, path)
    except OSError:
        if tmp:
            with contextlib.suppress(OSError):
                os.remove(tmp)
