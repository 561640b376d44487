"""Math tasks: held-out `mathgen` problems, and the answer normalisation their exact match uses.

In-distribution tasks are the eval split's problems at the training difficulties (1-3); extrapolation
tasks are its problems at difficulties 4-5, which no training document has. The eval split uses seeds
disjoint from train and drops nothing, while train drops any question eval also asks (`mathgen`). The
prompt is the training format up to the answer (`Question: ...\\nAnswer:`), optionally after k solved
problems of the same family drawn from the TRAIN split (few-shot).

Free-form tasks (suite `math_free`) stop the prompt after the question line, so the model chooses the
form it learned: the answer at once, or a worked solution (`Solution: ... Answer: X`) then the answer.
The answer after the last `Answer:` counts. This is the fair measure between arms that saw different
forms: a model trained on traces (the `scaffold` arm) is not asked to answer in a format it never saw.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from fractions import Fraction

from mixlab.data.builtin import mathgen
from mixlab.evals import dimensions
from mixlab.evals.tasks import Task

TRAIN_DIFFICULTIES = mathgen.SPLIT_DIFFICULTIES["train"]
EXTRAPOLATION_DIFFICULTIES = tuple(d for d in mathgen.DIFFICULTIES if d not in TRAIN_DIFFICULTIES)
# Longest eval answer is 50 characters (a degree-4 product); the byte tokenizer spends one token each.
MAX_NEW_TOKENS = 96
# Free-form room for a worked solution: 99% of the training-difficulty traces are shorter (bytes).
MAX_NEW_TOKENS_FREE = 512

_ASSIGNMENT = re.compile(r"([A-Za-z]\w*)\s*=\s*(\S.*)", re.DOTALL)
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
_NUMBER = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:/([+-]?\d+))?")


def _value(text: str) -> str:
    """A number in lowest terms (`Fraction` form: "2", "-3/2"), else the text without whitespace."""
    compact = re.sub(r"\s+", "", text)
    if _THOUSANDS.fullmatch(compact):
        compact = compact.replace(",", "")
    m = _NUMBER.fullmatch(compact)
    if m and (m[2] is None or int(m[2]) != 0):
        return str(Fraction(m[1]) / Fraction(m[2] or 1))  # also turns -0 into 0 and 0.5 into 1/2
    return compact


def normalise_answer(text: str) -> str:
    """The canonical form two answers are compared in.

    - surrounding whitespace and trailing periods go: " 12. " -> "12"
    - numbers: spaces, thousands separators and a leading + go; fractions and terminating decimals are
      reduced: "1,008" -> "1008", "+5" -> "5", "4/2" -> "2", "6/-4" -> "-3/2", "0.50" -> "1/2", "-0" -> "0"
    - one assignment keeps its value: "x = 3" -> "3"; several are sorted by name:
      "b = -7, a = -10" -> "a=-10,b=-7"
    - anything else loses its whitespace only: "8*y**2 - 10*y - 12" -> "8*y**2-10*y-12"
    """
    text = text.strip().rstrip(".").strip()
    parts = [_ASSIGNMENT.fullmatch(p.strip()) for p in text.split(",")]
    if len(parts) > 1 and all(parts):
        return ",".join(sorted(f"{m[1]}={_value(m[2])}" for m in parts))
    single = _ASSIGNMENT.fullmatch(text)
    return _value(single[2] if single else text)


def answers_match(completion: str, answer: str) -> bool:
    """Whether the first line of `completion` is `answer` once both are normalised."""
    first = completion.split("\n", 1)[0]
    return normalise_answer(first) == normalise_answer(answer)


def final_answer_matches(completion: str, answer: str) -> bool:
    """Whether the rest of the line after the last `Answer:` in `completion` is `answer` (normalised);
    False when the completion never says `Answer:`."""
    at = completion.rfind("Answer:")
    if at < 0:
        return False
    return answers_match(completion[at + len("Answer:") :], answer)


@functools.cache
def _train_by_family() -> dict[str, tuple[mathgen.Problem, ...]]:
    by_family: dict[str, list[mathgen.Problem]] = {f: [] for f in mathgen.FAMILIES}
    for p in mathgen.split_problems("train"):
        by_family[p.family].append(p)
    return {f: tuple(ps) for f, ps in by_family.items()}


def shots(family: str, k: int) -> str:
    """The first k train problems of `family` in the training format (difficulties rotate 1-3)."""
    if k == 0:
        return ""  # without building the train split (~1 s)
    return "".join(mathgen.render(p, "answer") for p in _train_by_family()[family][:k])


def load(
    *,
    extrapolation: bool = False,
    families: Sequence[str] | None = None,
    per_cell: int | None = None,
    num_shots: int = 0,
    free_form: bool = False,
) -> list[Task]:
    """Held-out math tasks (suite `math`, `math_extrap` for difficulties 4-5, `math_free` free-form).

    Args:
      extrapolation: difficulties 4-5 instead of the training difficulties 1-3.
      free_form: the prompt ends after the question; the last `Answer:` of the completion counts.
      families: a subset of `mathgen.FAMILIES` (default: all).
      per_cell: at most this many problems per (family, difficulty); the eval split has 25.
      num_shots: solved train problems of the same family before each question.
    """
    families = tuple(families or mathgen.FAMILIES)
    unknown = set(families) - set(mathgen.FAMILIES)
    if unknown:
        raise ValueError(f"unknown math families {sorted(unknown)} (known: {', '.join(mathgen.FAMILIES)})")
    levels = EXTRAPOLATION_DIFFICULTIES if extrapolation else TRAIN_DIFFICULTIES
    suite = ("math_free" if free_form else "math") + ("_extrap" if extrapolation else "")
    taken: dict[tuple[str, int], int] = {}
    tasks = []
    for p in mathgen.split_problems("eval"):
        cell = (p.family, p.difficulty)
        if p.family not in families or p.difficulty not in levels:
            continue
        if per_cell is not None and taken.get(cell, 0) >= per_cell:
            continue
        taken[cell] = taken.get(cell, 0) + 1
        tasks.append(
            Task(
                id=f"{suite}/{p.family}/{p.seed}/{p.difficulty}",
                prompt=shots(p.family, num_shots)
                + f"Question: {p.question}\n"
                + ("" if free_form else "Answer:"),
                kind="exact",
                suite=suite,
                answer=p.answer,
                family=p.family,
                difficulty=p.difficulty,
                dimension=dimensions.dimension_of(dimensions.metric_name(suite, p.family)),
                stop=("\nQuestion:",) if free_form else ("\n",),
                max_new_tokens=MAX_NEW_TOKENS_FREE if free_form else MAX_NEW_TOKENS,
                match="math_final" if free_form else "math",
            )
        )
    return tasks
