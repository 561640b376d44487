"""Scoring with fake generators: pass@k, stop strings, oracle 100% and garbage 0% on every kind of task."""

import contextlib
import io
import math
from fractions import Fraction

import pytest

from mixlab.evals import code_tasks, math_tasks, scoring, suite
from mixlab.evals.tasks import CODE_STOPS
from tests.evals import fakes


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (10, 3, 1, 0.3),  # pass@1 is the pass rate
        (10, 3, 10, 1.0),  # k = n: some sample passed
        (10, 0, 1, 0.0),
        (10, 0, 10, 0.0),
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (10, 10, 1, 1.0),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert scoring.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_stable_where_the_binomials_are_huge():
    n, c, k = 1000, 37, 500
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert scoring.pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, 2, 0), (5, 2, 6), (3, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        scoring.pass_at_k(n, c, k)


def test_completions_are_cut_at_the_first_stop_string():
    assert scoring.cut_at_stop("    return x\ndef g():\n#", CODE_STOPS) == "    return x"
    assert scoring.cut_at_stop(" 42", ["\n"]) == " 42"
    assert scoring.cut_at_stop("\n42", ["\n"]) == ""


@pytest.fixture(scope="module")
def math_and_output_tasks():
    return (
        math_tasks.load(per_cell=2)
        + math_tasks.load(extrapolation=True, per_cell=2)
        + code_tasks.output_prediction(per_cell=4)
    )


def test_oracle_scores_everything_and_garbage_nothing_on_math_and_output_prediction(math_and_output_tasks):
    tasks = math_and_output_tasks
    assert {t.suite for t in tasks} == {"math", "math_extrap", "output_pred"}
    perfect = scoring.score(tasks, fakes.oracle(tasks))
    assert [r.score for r in perfect] == [1.0] * len(tasks)
    wrong = scoring.score(tasks, fakes.garbage)
    assert [r.score for r in wrong] == [0.0] * len(tasks)
    results = suite.evaluate(tasks, fakes.oracle(tasks))
    assert results["summary"]["dimension:math"]["score"] == 1.0
    assert results["summary"]["output_pred"]["items"] == 3 * 5 * 4


def test_oracle_passes_and_garbage_fails_generated_code_tasks():
    tasks = code_tasks.code_generation(per_cell=1)
    assert len(tasks) == 9 and all(t.kind == "exec" for t in tasks)
    assert all(r.score == 1.0 for r in scoring.score(tasks, fakes.oracle(tasks)))
    failed = scoring.score(tasks, fakes.garbage)
    assert all(r.score == 0.0 and r.exit_reasons == ["error"] for r in failed)


def test_output_prediction_answers_are_what_the_programs_print():
    tasks = code_tasks.output_prediction(per_cell=2)
    assert len({t.id for t in tasks}) == len(tasks) == 30
    for t in tasks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):  # our own generated programs: safe to run here
            exec(t.prompt.removesuffix("# Output:"), {"__name__": "__main__"})
        assert out.getvalue() == t.answer + "\n" and t.answer  # never empty: strings print with quotes
    assert code_tasks.output_prediction(per_cell=2) == tasks  # deterministic


def test_sampling_counts_and_pass_at_k():
    tasks = math_tasks.load(families=["gcd"], per_cell=1)[:2]

    def three_of_five(prompts, *, num_samples, **_):
        answers = {t.prompt: t.answer for t in tasks}
        return [[f" {answers[p]}"] * 3 + [" 0"] * (num_samples - 3) for p in prompts]

    results = scoring.score(tasks, three_of_five, num_samples=5, temperature=0.8, ks=(1, 2, 5))
    for r in results:
        assert (r.samples, r.correct, r.score) == (5, 3, 0.6)
        assert r.pass_at == {1: pytest.approx(0.6), 2: pytest.approx(0.9), 5: 1.0}


def test_the_generator_gets_each_kinds_stop_strings_and_a_seed_per_call():
    tasks = math_tasks.load(families=["gcd"], per_cell=1) + code_tasks.code_generation(per_cell=1)
    recorder = fakes.Recorder()
    scoring.score(tasks, recorder, seed=7, batch_size=2)
    by_stop = {tuple(c["stop"]) for c in recorder.calls}
    assert by_stop == {("\n",), CODE_STOPS}
    assert all(len(c["prompts"]) <= 2 for c in recorder.calls)
    assert [c["seed"] for c in recorder.calls] == list(range(7, 7 + len(recorder.calls)))
    assert sorted(p for c in recorder.calls for p in c["prompts"]) == sorted(t.prompt for t in tasks)


def test_a_generator_returning_the_wrong_shape_is_an_error():
    tasks = math_tasks.load(families=["gcd"], per_cell=1)

    def too_few(prompts, **_):
        return [[" 1"]]

    with pytest.raises(ValueError, match="completions"):
        scoring.score(tasks, too_few)
