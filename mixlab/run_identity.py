"""What a workdir's checkpoints are of: recorded at a run's first start, checked before every resume.

`WORKDIR/run_identity.json` (written once, before the first checkpoint; `config.json` beside it is
rewritten by every start) holds
  config   the keys that shape the state (`model`, `data.seq_len`, `train.batch_size`) and name the data
           (`data.mixture_file`, `data.weights`, `data.arm`, `data.schedule`), as the config gave them
  stages   the resolved weights: [[first step, {domain: weight > 0}], ...] (arm and schedule applied)
  data     a fingerprint of what the stream reads: per read domain its train documents' count, tokens
           and the sha256 of their token lengths; with a mixture file also the file's sha256 and, per
           source, its files' names, sizes and sha256 (files over 8 MiB: of their first and last MiB)

A resume at step S is refused, naming every difference, when the state's shape keys or the mixture file
path changed, when the weights of steps 0..S differ (a `data.schedule` stage that starts after S may be
added or changed: that is how a mixture changes mid-run), or when the data fingerprint differs. Not
detected: an edit inside a file over 8 MiB that keeps its size and its first and last MiB, and keeps
every document's token length.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import ml_collections
import numpy as np

from mixlab import configlib, data
from mixlab.data import readers, shards

FILE = "run_identity.json"
SHAPE_KEYS = ("model", "data.seq_len", "train.batch_size", "data.mixture_file")
MIXTURE_KEYS = ("data.weights", "data.arm", "data.schedule")
FULL_HASH_BYTES, SAMPLE_BYTES = 8 << 20, 1 << 20


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size <= FULL_HASH_BYTES:
            h.update(f.read())
        else:  # big shards: hashing terabytes at every start is not an option; size + both ends
            h.update(f.read(SAMPLE_BYTES))
            f.seek(size - SAMPLE_BYTES)
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def _files_digest(paths: list[str], root: str) -> dict[str, Any]:
    h = hashlib.sha256()
    total = 0
    for p in paths:
        size = os.path.getsize(p)
        total += size
        h.update(f"{os.path.relpath(p, root)}\0{size}\0{_sha256_file(p)}\n".encode())
    return {"files": len(paths), "bytes": total, "sha256": h.hexdigest()}


def data_fingerprint(plan: data.DataPlan) -> dict[str, Any]:
    """The fingerprint of the module docstring for the domains `plan` reads."""
    catalog = plan.catalog
    domains = {}
    for name in plan.active:
        lengths = np.asarray(catalog.stream(name, "train").lengths, "<i8")
        digest = hashlib.sha256(lengths.tobytes()).hexdigest()
        domains[name] = {"documents": len(lengths), "tokens": int(lengths.sum()), "lengths_sha256": digest}
    out: dict[str, Any] = {"domains": domains}
    mixture = catalog.mixture
    if mixture is not None:
        root = os.path.dirname(mixture.path)
        out["mixture_file"] = {"path": mixture.path, "sha256": _sha256_file(mixture.path)}
        out["sources"] = {}
        for d in mixture.domains:
            for s in d.sources:
                paths = readers.files(s)
                if s.kind == "arrayrecord" and (index := shards.find_index(paths[0])):
                    paths = [*paths, index]  # prepare rewrites the index with the shards
                out["sources"][s.what] = _files_digest(paths, root)
    return out


def compute(config: ml_collections.ConfigDict, plan: data.DataPlan) -> dict[str, Any]:
    values = json.loads(config.to_json_best_effort())
    return {
        "format": 1,
        "config": {k: _get(values, k) for k in SHAPE_KEYS + MIXTURE_KEYS},
        "stages": [
            [s.start_step, {n: w for n, w in s.mixture.as_dict().items() if w > 0}] for s in plan.stages
        ],
        "data": data_fingerprint(plan),
    }


def load(workdir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(workdir, FILE)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise configlib.ConfigError(f"{os.path.join(workdir, FILE)} is unreadable: {e}") from None


def write(workdir: str, identity: dict[str, Any]) -> None:
    path = os.path.join(workdir, FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(identity, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)  # whole or absent: a start cut short leaves no half identity


def check(workdir: str, now: dict[str, Any], step: int) -> None:
    """Refuses (ConfigError naming each difference) to resume the checkpoints of `workdir`, the latest
    at `step`, with a run whose identity is `now`. A workdir from before this file is checked against
    its config.json (without the data fingerprint)."""
    saved = load(workdir)
    if saved is None:
        problems = _legacy_problems(workdir, now)
    else:
        problems = _config_diffs(saved["config"], now["config"], SHAPE_KEYS)
        if not _same_stages(saved["stages"], now["stages"], step):
            keys = _config_diffs(saved["config"], now["config"], MIXTURE_KEYS) or [
                "the weights in data.mixture_file"
            ]
            problems.append(
                f"{', '.join(keys)} (changes the weights of steps 0..{step}, already trained; only "
                f"data.schedule stages that start after step {step} may change)"
            )
        problems += _data_diffs(saved["data"], now["data"])
    if problems:
        raise configlib.ConfigError(
            f"{workdir} holds checkpoints (latest step {step}) of another model or data stream: "
            f"{'; '.join(problems)}; resume with the original config and data, or use a new --workdir"
        )


def _legacy_problems(workdir: str, now: dict[str, Any]) -> list[str]:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        old = json.load(f)
    return _config_diffs({k: _get(old, k) for k in SHAPE_KEYS + MIXTURE_KEYS}, now["config"])


def _config_diffs(a: dict, b: dict, keys: tuple[str, ...] | None = None) -> list[str]:
    out = []
    for key in keys or tuple(a):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += [f"{key}.{k}: {_short(x.get(k))} -> {_short(y.get(k))}" for k in sorted(set(x) | set(y))
                    if x.get(k) != y.get(k)]  # fmt: skip
        elif x != y:
            out.append(f"{key}: {_short(x)} -> {_short(y)}")
    return out


def _same_stages(a: list, b: list, step: int) -> bool:
    def trained(stages):
        return [(start, w) for start, w in stages if start <= step]

    ta, tb = trained(a), trained(b)
    return len(ta) == len(tb) and all(
        sa == sb and wa.keys() == wb.keys() and all(abs(wa[k] - wb[k]) <= 1e-9 for k in wa)
        for (sa, wa), (sb, wb) in zip(ta, tb, strict=True)
    )


def _data_diffs(a: dict, b: dict) -> list[str]:
    out = []
    fa, fb = a.get("mixture_file"), b.get("mixture_file")
    if fa and fb and fa["sha256"] != fb["sha256"]:
        out.append(
            f"data.mixture_file contents ({fb['path']}): sha256 {fa['sha256'][:12]} -> {fb['sha256'][:12]}"
        )

    def files(x: dict) -> str:
        return f"{x['files']} files, {x['bytes']:,} bytes, sha256 {x['sha256'][:12]}"

    def docs(x: dict) -> str:
        return (
            f"{x['documents']:,} documents, {x['tokens']:,} tokens, lengths sha256 {x['lengths_sha256'][:12]}"
        )

    for key, what, describe in (
        ("sources", "files of {}", files),
        ("domains", "train data of domain {!r}", docs),
    ):
        for name, x in a.get(key, {}).items():
            y = b.get(key, {}).get(name)
            if y is not None and x != y:
                out.append(f"{what.format(name)}: {describe(x)} -> {describe(y)}")
    return out


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _get(tree: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree
