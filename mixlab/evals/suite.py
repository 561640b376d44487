"""What `experiments/eval.py` calls for task evaluation: named suites, task files, results, verification.

tasks, problems = suite.load(["math", "humaneval"], task_file="extra.jsonl")
results = suite.evaluate(tasks, generate_fn, num_samples=1)
path = suite.write(workdir, step, results)          # workdir/eval/tasks_step_<step>.json
report = suite.verify_tasks("extra.jsonl")           # reference solutions against their tests
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence

import numpy as np

from mixlab.configlib import ConfigError
from mixlab.evals import code_tasks, humaneval, math_tasks, sandbox, scoring, tasks
from mixlab.evals.scoring import GenerateFn
from mixlab.evals.tasks import Task

# name -> loader(math_shots, math_per_cell); every suite's tasks are the same in every process.
SUITES: dict[str, Callable[[int, int | None], list[Task]]] = {
    "math": lambda shots, per_cell: math_tasks.load(num_shots=shots, per_cell=per_cell),
    "math_extrap": lambda shots, per_cell: math_tasks.load(
        extrapolation=True, num_shots=shots, per_cell=per_cell
    ),
    "math_free": lambda shots, per_cell: math_tasks.load(free_form=True, num_shots=shots, per_cell=per_cell),
    "output_pred": lambda shots, per_cell: code_tasks.output_prediction(),
    "code_gen": lambda shots, per_cell: code_tasks.code_generation(),
    "humaneval": lambda shots, per_cell: humaneval.load(),
}


def load(
    names: str | Sequence[str],
    task_file: str | None = None,
    *,
    math_shots: int = 0,
    math_per_cell: int | None = None,
) -> tuple[list[Task], list[str]]:
    """Tasks of the named suites ("all" for every one) and of a JSON-lines file; and the file's skipped
    lines as `path:line: reason`.

    Raises:
      ConfigError: an unknown suite name, a missing task file, or a task id given twice.
    """
    if isinstance(names, str):  # "math,humaneval"
        names = names.split(",")
    names = [n.strip() for n in names if n.strip()]
    if "all" in names:
        names = list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ConfigError(f"unknown task suite(s) {', '.join(unknown)} (known: {', '.join(SUITES)}, all)")
    loaded = [t for n in dict.fromkeys(names) for t in SUITES[n](math_shots, math_per_cell)]
    problems: list[str] = []
    if task_file:
        if not os.path.isfile(task_file):
            raise ConfigError(f"task file {task_file} not found")
        from_file, problems = tasks.load_file(task_file)
        loaded += from_file
    seen: set[str] = set()
    for t in loaded:
        if t.id in seen:
            raise ConfigError(f"task id {t.id!r} occurs twice")
        seen.add(t.id)
    return loaded, problems


def summarise(items: Sequence[scoring.ItemResult]) -> dict[str, dict]:
    """Mean score per metric (`suite/family`), per suite and per dimension, with item counts."""
    groups: dict[str, list[scoring.ItemResult]] = {}
    for it in items:
        for key in {it.metric, it.suite, f"dimension:{it.dimension}"}:
            groups.setdefault(key, []).append(it)
    out = {}
    for key, group in sorted(groups.items()):
        entry = {"score": float(np.mean([it.score for it in group])), "items": len(group)}
        for k in group[0].pass_at:
            entry[f"pass@{k}"] = float(np.mean([it.pass_at[k] for it in group]))
        if not key.startswith("dimension:"):
            entry["dimension"] = group[0].dimension
        out[key] = entry
    return out


def evaluate(
    task_list: Sequence[Task],
    generate_fn: GenerateFn,
    *,
    num_samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    ks: Sequence[int] = (1,),
    workers: int = 2,
    limits: sandbox.Limits = sandbox.DEFAULT_LIMITS,
) -> dict:
    """Scores `task_list` with `generate_fn`: `{"config", "summary", "items"}`, ready for `write`."""
    items = scoring.score(
        task_list,
        generate_fn,
        num_samples=num_samples,
        temperature=temperature,
        seed=seed,
        ks=ks,
        limits=limits,
        workers=workers,
    )
    rows = []
    for it in items:
        row = dataclasses.asdict(it)
        row["pass_at"] = {f"pass@{k}": v for k, v in it.pass_at.items()}
        rows.append(row)
    config = {"num_samples": num_samples, "temperature": temperature, "seed": seed, "ks": list(ks)}
    return {"config": config, "summary": summarise(items), "items": rows}


def results_path(workdir: str, step: int) -> str:
    return os.path.join(workdir, "eval", f"tasks_step_{step}.json")


def write(workdir: str, step: int, results: dict) -> str:
    """Writes `workdir/eval/tasks_step_<step>.json` (beside the loss eval's `step_<step>.json`)."""
    path = results_path(workdir, step)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"step": step, **results}, f, indent=1)
    return path


def verify_tasks(path: str, *, workers: int = 2, limits: sandbox.Limits = sandbox.DEFAULT_LIMITS) -> dict:
    """Runs every reference `solution` of a task file against its tests in the sandbox.

    Returns `{"path", "tasks": [{"id", "status", ...}], "problems": [...], "counts": {...}}` where status is
    pass / fail / unchecked (no solution, or an exact-match task) and problems are the skipped lines.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"task file {path} not found")
    loaded, problems = tasks.load_file(path)
    report = scoring.verify(loaded, limits, workers)
    counts = {s: sum(r["status"] == s for r in report) for s in ("pass", "fail", "unchecked")}
    counts["malformed"] = len(problems)
    return {"path": path, "tasks": report, "problems": problems, "counts": counts}


def format_report(report: dict) -> str:
    """`verify_tasks`'s report as lines to print: failures and skipped lines, then the counts."""
    lines = []
    for r in report["tasks"]:
        if r["status"] == "fail":
            last = (r["stderr_tail"].strip().splitlines() or [""])[-1]
            lines.append(f"FAIL {r['id']} ({r['exit_reason']}): {last}")
    lines += [f"SKIPPED {p}" for p in report["problems"]]
    lines.append(f"{report['path']}: " + ", ".join(f"{n} {s}" for s, n in report["counts"].items()))
    return "\n".join(lines)


def format_summary(results: dict) -> str:
    """One line per suite and dimension: score and item count."""
    return "\n".join(
        f"{key:>24}: {v['score']:.4f}  ({v['items']} items)"
        for key, v in results["summary"].items()
        if key.startswith("dimension:") or key in SUITES or (key.startswith("file:") and "/" not in key)
    )
