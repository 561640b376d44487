"""mixlab's math problem generator: one problem, three renderings, every answer checked.

A problem is a pure function of (family, seed, difficulty). Each is rendered three ways from the
same drawn numbers, so an ablation arm can swap the form of the same problems at equal tokens:

  answer   "Question: ...\\nAnswer: ...\\n"                           (domain `math`)
  trace    the question, numbered worked steps, then the answer line    (domain `math_traces`)
  program  the question as a comment, then Python that prints the answer (domain `code_math`)

Families (`FAMILIES`): arithmetic (multi-step integer expressions), fraction (chains of + - * / in
lowest terms), linear (one unknown, brackets), linear_system (2x2, elimination), gcd (Euclid),
modular (remainders, then powers by square-and-multiply), polynomial (expanding products), word
(rates, ages, shopping). Answers are ints or `fractions.Fraction`, checked a second way inside each
family (substitution, math.gcd, pow, evaluation at points); every program is run once, in-process
with its `print` captured, and must print exactly the answer. A mismatch raises `MathgenError`.

Difficulty 1..5 sets the number of steps and the size of the numbers. Train uses levels 1-3 only;
eval has all five, so levels 4-5 measure extrapolation (`SPLIT_DIFFICULTIES`). Splits use disjoint
seed ranges (`SPLIT_SEEDS`); a train problem whose question also occurs in eval is dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import random
from collections.abc import Callable

from mixlab.data.builtin import math_algebra, math_numeric, math_word
from mixlab.data.builtin.math_numeric import MathgenError, Solved

FORMS = ("answer", "trace", "program")
DIFFICULTIES = (1, 2, 3, 4, 5)
SPLIT_DIFFICULTIES = {"train": (1, 2, 3), "eval": (1, 2, 3, 4, 5)}
# (first seed, number of problems): disjoint ranges. Train is sized so that building one math domain
# takes about a second; eval has 25 problems per (family, difficulty).
SPLIT_SEEDS = {"train": (0, 12_000), "eval": (1_000_000_000, 1_000)}
DOMAIN_FORMS = {"math": "answer", "math_traces": "trace", "code_math": "program"}

_FAMILIES: dict[str, Callable[[random.Random, int], Solved]] = {
    "arithmetic": math_numeric.arithmetic,
    "fraction": math_numeric.fraction,
    "linear": math_algebra.linear,
    "linear_system": math_algebra.linear_system,
    "gcd": math_numeric.gcd,
    "modular": math_numeric.modular,
    "polynomial": math_algebra.polynomial,
    "word": math_word.word,
}
FAMILIES = tuple(_FAMILIES)

__all__ = ["DOMAIN_FORMS", "FAMILIES", "FORMS", "MathgenError", "Problem", "generate", "render"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One generated problem; `steps` is the worked solution, `program` prints `answer`."""

    family: str
    seed: int
    difficulty: int
    question: str
    answer: str
    steps: tuple[str, ...]
    program: str


def generate(family: str, seed: int, difficulty: int) -> Problem:
    """The problem of `family` drawn from (seed, difficulty): the same on every call and process.

    Raises:
      ValueError: unknown family or a difficulty outside 1..5.
      MathgenError: the answer failed its own check (a bug).
    """
    if family not in _FAMILIES:
        raise ValueError(f"unknown math family {family!r} (known: {', '.join(FAMILIES)})")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty {difficulty!r} is outside 1..5")
    # A string seed is hashed with SHA-512 by `random`: stable across processes, unlike hash().
    rng = random.Random(f"{family}/{seed}/{difficulty}")
    solved = _FAMILIES[family](rng, difficulty)
    return Problem(family, seed, difficulty, *solved)


def render(problem: Problem, form: str) -> str:
    """The document text of `problem` in one of `FORMS`; every form contains the question verbatim."""
    if form == "answer":
        return f"Question: {problem.question}\nAnswer: {problem.answer}\n"
    if form == "trace":
        steps = "".join(f"{i}. {step}\n" for i, step in enumerate(problem.steps, 1))
        return f"Question: {problem.question}\nSolution:\n{steps}Answer: {problem.answer}\n"
    if form == "program":
        return f"# Question: {problem.question}\n{problem.program}"
    raise ValueError(f"unknown form {form!r} (known: {', '.join(FORMS)})")


def run_program(source: str) -> str:
    """What `source` prints, run in-process (~0.1 ms, mostly compiling).

    `print` is replaced in the program's globals rather than redirecting sys.stdout, which is
    process-wide and would also capture other threads' output.
    """
    out = io.StringIO()
    namespace = {"__name__": "__main__", "print": functools.partial(print, file=out)}
    exec(compile(source, "<mathgen program>", "exec"), namespace)
    return out.getvalue()


def check_program(problem: Problem) -> None:
    """Raises MathgenError unless the problem's program prints exactly its answer."""
    printed = run_program(render(problem, "program"))
    if printed != problem.answer + "\n":
        raise MathgenError(
            f"{problem.family} seed={problem.seed} difficulty={problem.difficulty}: "
            f"program printed {printed!r}, answer is {problem.answer!r}"
        )


def split_grid(split: str) -> list[tuple[str, int, int]]:
    """(family, seed, difficulty) of a split before deduplication: families and levels in rotation."""
    first, count = SPLIT_SEEDS[split]
    levels = SPLIT_DIFFICULTIES[split]
    n = len(FAMILIES)
    return [(FAMILIES[k % n], first + k, levels[(k // n) % len(levels)]) for k in range(count)]


@functools.cache
def _generated(split: str) -> tuple[Problem, ...]:
    """A split's problems, a question repeated within the split kept once."""
    problems: dict[str, Problem] = {}
    for family, seed, difficulty in split_grid(split):
        p = generate(family, seed, difficulty)
        problems.setdefault(p.question, p)
    return tuple(problems.values())


def split_problems(split: str) -> tuple[Problem, ...]:
    """Problems of "train" or "eval"; train drops any question that eval also asks."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLIT_SEEDS)})")
    if split == "eval":
        return _generated("eval")
    eval_questions = {p.question for p in _generated("eval")}
    return tuple(p for p in _generated("train") if p.question not in eval_questions)


def contamination() -> dict[str, int]:
    """Train problems dropped because eval asks the same question (exact match of the question)."""
    return {"exact": len(_generated("train")) - len(split_problems("train"))}


@functools.cache
def check_programs(split: str) -> None:
    """Runs every program of a split once per process (~1 s for train); raises on a mismatch."""
    for p in split_problems(split):
        check_program(p)


def domain_documents(domain: str, split: str) -> list[str]:
    """The documents of one math domain, in problem order, aligned across the three domains.

    This is the generator's view; `corpus.load_documents` also removes near-duplicates of any eval
    document, dropping a problem from all three domains at once. Programs are run (once per
    process) when `code_math` is asked for.
    """
    if domain not in DOMAIN_FORMS:
        raise ValueError(f"unknown math domain {domain!r} (known: {', '.join(DOMAIN_FORMS)})")
    form = DOMAIN_FORMS[domain]
    if form == "program":
        check_programs(split)
    return [render(p, form) for p in split_problems(split)]
