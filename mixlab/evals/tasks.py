"""Evaluation tasks: the `Task` record, the program an execution task runs, and JSON-lines task files.

Two kinds:
  exact  the first line of the completion must equal `answer` after normalisation (`match`: "math" uses
         `math_tasks.normalise_answer`, "text" strips surrounding whitespace only; "math_final" takes
         the line after the completion's last `Answer:` instead of its first line).
  exec   the program `prefix + completion + tests [+ check(entry_point)]` must run to its end and exit 0
         in the sandbox (an exit before the last statement returned fails, whatever its status).
         `prefix` defaults to the prompt (HumanEval: the prompt is the signature and docstring, the
         completion the body); give `"prefix": ""` when the prompt is prose and the model writes the
         whole function. `tests` either define `check(candidate)` (HumanEval), which is then called
         with `entry_point`, or are plain statements (MBPP-style asserts) run after the code.

A task file has one JSON object per line: `{"id", "prompt", "answer"}` or
`{"id", "prompt", "tests", "entry_point", "solution"?, "prefix"?}`, optionally with "family",
"difficulty", "dimension", "stop", "max_new_tokens", "match". A line that is not such an object is
reported as `path:line: reason` and skipped; the other lines still load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

from mixlab.evals import dimensions

KINDS = ("exact", "exec")
# The stop sequences of the Codex paper (Chen et al. 2021): a new top-level statement ends the body.
CODE_STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
_CHECK = re.compile(r"^def check\(", re.MULTILINE)
_FIELDS = {
    "id",
    "prompt",
    "answer",
    "tests",
    "entry_point",
    "solution",
    "prefix",
    "family",
    "difficulty",
    "dimension",
    "stop",
    "max_new_tokens",
    "match",
}


@dataclasses.dataclass(frozen=True)
class Task:
    """One evaluation item; `suite`/`family` name the metric it counts towards (`dimensions`)."""

    id: str
    prompt: str
    kind: str
    suite: str
    answer: str | None = None
    tests: str | None = None
    entry_point: str | None = None
    solution: str | None = None  # exec: a reference completion (HumanEval's canonical_solution)
    prefix: str | None = None  # exec: the code before the completion; None means the prompt
    family: str = ""
    difficulty: int | None = None
    dimension: str = ""
    stop: tuple[str, ...] = ("\n",)
    max_new_tokens: int = 64
    match: str = "math"

    @property
    def metric(self) -> str:
        return dimensions.metric_name(self.suite, self.family)


def program(task: Task, completion: str) -> str:
    """The program an exec task runs for `completion`: passes iff its last statement (the tests, or the
    `check(entry_point)` call) returns and it then exits 0 (`sandbox.Result.passed`)."""
    if task.kind != "exec":
        raise ValueError(f"task {task.id} is {task.kind!r}, not 'exec'")
    prefix = task.prompt if task.prefix is None else task.prefix
    call = f"\n\ncheck({task.entry_point})\n" if _CHECK.search(task.tests or "") else "\n"
    return f"{prefix}{completion}\n\n{task.tests}{call}"


def _task_from_row(row: object, suite: str) -> Task:
    """A Task from one parsed line; raises ValueError saying what is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    for key in ("id", "prompt"):
        if not isinstance(row.get(key), str) or (key == "id" and not row[key]):
            raise ValueError(
                f"{key!r} must be a non-empty string" if key == "id" else "'prompt' must be a string"
            )
    has_answer, has_tests = "answer" in row, "tests" in row
    if has_answer == has_tests:
        raise ValueError("give either 'answer' (exact match) or 'tests' and 'entry_point' (execution)")
    strings = ["tests", "entry_point", "solution", "prefix", "family", "dimension"]
    for key in strings:
        if key in row and not isinstance(row[key], str):
            raise ValueError(f"{key!r} must be a string")
    if has_tests and not row.get("entry_point"):
        raise ValueError("'tests' needs 'entry_point'")
    if has_answer and not isinstance(row["answer"], str | int | float):
        raise ValueError("'answer' must be a string or a number")
    stop = row.get("stop", ["\n"] if has_answer else list(CODE_STOPS))
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise ValueError("'stop' must be a list of non-empty strings")
    for key in ("difficulty", "max_new_tokens"):
        if key in row and not isinstance(row[key], int):
            raise ValueError(f"{key!r} must be an integer")
    if row.get("match", "math") not in ("math", "text", "math_final"):
        raise ValueError("'match' must be 'math', 'math_final' or 'text'")
    kind = "exact" if has_answer else "exec"
    family = row.get("family", "")
    metric = dimensions.metric_name(suite, family)
    dimension = row.get("dimension") or dimensions.dimension_of(
        metric, "other" if kind == "exact" else "programming"
    )
    return Task(
        id=row["id"],
        prompt=row["prompt"],
        kind=kind,
        suite=suite,
        answer=str(row["answer"]) if has_answer else None,
        tests=row.get("tests"),
        entry_point=row.get("entry_point"),
        solution=row.get("solution"),
        prefix=row.get("prefix"),
        family=family,
        difficulty=row.get("difficulty"),
        dimension=dimension,
        stop=tuple(stop),
        max_new_tokens=row.get("max_new_tokens", 64 if has_answer else 384),
        match=row.get("match", "math"),
    )


def load_file(path: str) -> tuple[list[Task], list[str]]:
    """Tasks of a JSON-lines file and one `path:line: reason` per line that was skipped.

    The suite is `file:<file name without extension>`. Blank lines are ignored; a repeated id is an error
    on the later line.
    """
    suite = "file:" + os.path.basename(path).split(".")[0]
    tasks, problems, seen = [], [], set()
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                task = _task_from_row(json.loads(line.strip()), suite)
                if task.id in seen:
                    raise ValueError(f"id {task.id!r} repeats an earlier line")
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{number}: not valid JSON: {e.msg} (column {e.colno})")
                continue
            except ValueError as e:
                problems.append(f"{path}:{number}: {e}")
                continue
            seen.add(task.id)
            tasks.append(task)
    return tasks, problems
