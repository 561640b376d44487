"""The floors an accuracy must clear: the constant-answer rate of every exact-match task suite.

The constant-answer rate is the accuracy of always answering the suite's most frequent gold answer
(normalised as its exact match normalises it): at CPU scales a model that learned only the most
common answer scores exactly this (in the committed cpu grid of 2026-11-29, 84 of the 127 correct
math answers were the literal "10"). Gold answers are rebuilt from the task ids, which carry the
generator's (family, seed, difficulty): math ids are `<suite>/<family>/<seed>/<difficulty>`, output
prediction ids are looked up in `code_tasks.output_prediction()`. Execution suites (code_gen,
humaneval) have no constant answer; their rate is reported as None.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from mixlab.data.builtin import mathgen
from mixlab.evals import code_tasks, math_tasks
from mixlab.report import stats


@functools.cache
def _output_answers() -> dict[str, str]:
    return {t.id: t.answer for t in code_tasks.output_prediction()}


def gold_answer(task_id: str) -> str | None:
    """The normalised gold answer of a generated task id, or None when the id is not one mixlab made."""
    suite, *rest = task_id.split("/")
    try:
        if suite.startswith("math") and len(rest) == 3:
            family, seed, difficulty = rest[0], int(rest[1]), int(rest[2])
            return math_tasks.normalise_answer(mathgen.generate(family, seed, difficulty).answer)
        if suite == "output_pred":
            answer = _output_answers().get(task_id)
            return None if answer is None else answer.strip()
    except (ValueError, mathgen.MathgenError):
        return None
    return None


def constant_rate(task_ids: Iterable[str]) -> dict | None:
    """{"rate", "answer", "items"} of a suite's items, or None when any gold answer is unknown."""
    ids = list(task_ids)
    golds = [gold_answer(i) for i in ids]
    if not ids or any(g is None for g in golds):
        return None
    rate, answer = stats.constant_answer_rate(golds)
    return {"rate": rate, "answer": answer, "items": len(ids)}


def suite_rates(tasks: dict | None) -> dict[str, dict | None]:
    """Per suite of a run's task eval (`eval/tasks_step_<N>.json`), its constant-answer rate."""
    by_suite: dict[str, list[str]] = {}
    for it in (tasks or {}).get("items", []):
        if it.get("kind") == "exact":
            by_suite.setdefault(it["suite"], []).append(str(it["id"]))
    return {s: constant_rate(ids) for s, ids in sorted(by_suite.items())}
