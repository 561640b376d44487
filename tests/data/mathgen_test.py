"""mathgen: every family, form and difficulty gives one problem, answered right three ways."""

import contextlib
import dataclasses
import io
import os
import re
import subprocess
import sys

import pytest

from mixlab.data.builtin import mathgen
from tests.data import math_answers

SEEDS = (0, 1, 2, 17, 123, 999_999)
CASES = [(f, s, d) for f in mathgen.FAMILIES for d in mathgen.DIFFICULTIES for s in SEEDS]


def _stdout_of(source: str) -> str:
    """Runs a program with the real sys.stdout redirected, not mathgen's injected print."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<test>", "exec"), {"__name__": "__main__"})
    return out.getvalue()


def test_at_least_eight_families_and_the_three_forms():
    assert len(mathgen.FAMILIES) >= 8 and len(set(mathgen.FAMILIES)) == len(mathgen.FAMILIES)
    assert mathgen.FORMS == ("answer", "trace", "program")
    assert mathgen.DOMAIN_FORMS == {"math": "answer", "math_traces": "trace", "code_math": "program"}


@pytest.mark.parametrize("family", mathgen.FAMILIES)
def test_every_form_answers_the_same_question_correctly(family):
    for f, seed, difficulty in [c for c in CASES if c[0] == family]:
        p = mathgen.generate(f, seed, difficulty)
        assert (p.family, p.seed, p.difficulty) == (f, seed, difficulty)
        assert math_answers.check(p.question, p.answer) == family  # recomputed from the question text
        answer, trace, program = (mathgen.render(p, form) for form in mathgen.FORMS)
        assert answer == f"Question: {p.question}\nAnswer: {p.answer}\n"
        # The trace: the same question, steps numbered 1..n, then the same answer line.
        lines = trace.splitlines()
        assert lines[:2] == [f"Question: {p.question}", "Solution:"] and lines[-1] == f"Answer: {p.answer}"
        assert [int(re.match(r"(\d+)\. ", line)[1]) for line in lines[2:-1]] == list(
            range(1, len(p.steps) + 1)
        )
        assert p.steps and all(s.strip() and "\n" not in s for s in p.steps)
        # The program: the same question as its first line, and it prints exactly the answer.
        assert program.splitlines()[0] == f"# Question: {p.question}"
        assert _stdout_of(program) == p.answer + "\n"


def test_programs_print_the_answer_in_a_fresh_interpreter(tmp_path):
    problems = [mathgen.generate(f, 5, 5) for f in mathgen.FAMILIES]
    paths = []
    for i, p in enumerate(problems):
        paths.append(tmp_path / f"p{i}.py")
        paths[-1].write_text(mathgen.render(p, "program"))
    # One interpreter runs each file as __main__ in turn: a real process without 8 start-ups.
    runner = "import runpy, sys\nfor path in sys.argv[1:]:\n    runpy.run_path(path, run_name='__main__')\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # self-contained: no mixlab
    out = subprocess.run(
        [sys.executable, "-I", "-c", runner, *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout == "".join(p.answer + "\n" for p in problems)


def test_generation_is_a_pure_function_of_family_seed_and_difficulty():
    assert [mathgen.generate(*c) for c in CASES[:40]] == [mathgen.generate(*c) for c in CASES[:40]]
    for family in mathgen.FAMILIES:
        questions = {mathgen.generate(family, s, 1).question for s in range(40)}
        assert len(questions) >= 38, family  # seeds matter; repeats are rare


@pytest.mark.parametrize("family", mathgen.FAMILIES)
def test_difficulty_means_more_steps_or_larger_numbers(family):
    def size(d: int) -> float:
        problems = [mathgen.generate(family, s, d) for s in range(30)]
        return sum(len(p.steps) + len(re.findall(r"\d", p.question)) for p in problems) / 30

    sizes = [size(d) for d in mathgen.DIFFICULTIES]
    assert sizes[0] < sizes[2] < sizes[4], sizes  # levels 4-5 extrapolate beyond train's 1-3


def test_check_program_catches_a_wrong_answer():
    p = mathgen.generate("gcd", 3, 2)
    mathgen.check_program(p)
    with pytest.raises(mathgen.MathgenError, match="gcd seed=3 difficulty=2: program printed"):
        mathgen.check_program(dataclasses.replace(p, answer=str(int(p.answer) + 1)))


def test_splits_hold_out_seeds_and_the_hardest_levels():
    train, eval_ = mathgen.split_problems("train"), mathgen.split_problems("eval")
    assert {p.difficulty for p in train} == set(mathgen.SPLIT_DIFFICULTIES["train"]) == {1, 2, 3}
    assert {p.difficulty for p in eval_} == {1, 2, 3, 4, 5}
    assert not {p.seed for p in train} & {p.seed for p in eval_}
    assert not {p.question for p in train} & {p.question for p in eval_}
    assert len({p.question for p in train}) == len(train)
    for split, problems in (("train", train), ("eval", eval_)):
        first, count = mathgen.SPLIT_SEEDS[split]
        assert all(first <= p.seed < first + count for p in problems)
        counts = {f: sum(p.family == f for p in problems) for f in mathgen.FAMILIES}
        assert min(counts.values()) > 0.9 * len(problems) / len(mathgen.FAMILIES), counts
    # Train problems asking an eval question are dropped and counted.
    dropped = {p.question for p in mathgen._generated("train")} - {p.question for p in train}
    assert dropped <= {p.question for p in eval_}
    assert mathgen.contamination() == {"exact": len(dropped)}


def test_domain_documents_are_aligned_across_forms():
    docs = {d: mathgen.domain_documents(d, "eval") for d in mathgen.DOMAIN_FORMS}
    assert len({len(v) for v in docs.values()}) == 1
    for answer, trace, program in zip(*docs.values(), strict=True):
        question = answer.splitlines()[0].removeprefix("Question: ")
        assert trace.splitlines()[0] == f"Question: {question}"
        assert program.splitlines()[0] == f"# Question: {question}"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mathgen.generate("calculus", 0, 1), "unknown math family 'calculus' (known: arithmetic,"),
        (lambda: mathgen.generate("gcd", 0, 6), "difficulty 6 is outside 1..5"),
        (lambda: mathgen.render(mathgen.generate("gcd", 0, 1), "essay"), "unknown form 'essay'"),
        (lambda: mathgen.domain_documents("text", "train"), "unknown math domain 'text'"),
        (lambda: mathgen.split_problems("test"), "unknown split 'test'"),
    ],
)
def test_errors_name_the_culprit(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
