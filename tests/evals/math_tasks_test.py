"""Math tasks: answer normalisation, held-out splits, extrapolation levels and few-shot prompts."""

import pytest

from mixlab.data.builtin import mathgen
from mixlab.evals import math_tasks, scoring

EQUAL = [
    (" 12 ", "12"),
    ("12.", "12"),
    ("12 .", "12"),
    ("1,008", "1008"),
    ("-1,234,567", "-1234567"),
    ("+5", "5"),
    ("- 9", "-9"),
    ("4/2", "2"),
    ("6/-4", "-3/2"),
    ("-6/4", "-3/2"),
    ("0.50", "1/2"),
    ("2.0", "2"),
    ("-0", "0"),
    ("007", "7"),
    ("x = 3", "3"),
    ("y = -10", "-10"),
    ("x = 1,000", "1000"),
    ("b = -7, a = -10", "a = -10, b = -7"),
    ("a=-10,b=-7", "a = -10, b = -7"),
    ("8*y**2 - 10*y - 12", "8*y**2-10*y-12"),
]
DIFFERENT = [
    ("12", "13"),
    ("1,2", "12"),  # not a thousands separator
    ("1/3", "0.33"),  # decimals are exact: 0.33 is not 1/3
    ("a = 1, b = 2", "a = 2, b = 1"),
    ("8*y**2 - 10*y - 12", "8*y**2 - 10*y + 12"),
    ("", "0"),
    ("1/0", "0"),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_equivalent_answers_normalise_the_same(a, b):
    assert math_tasks.normalise_answer(a) == math_tasks.normalise_answer(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_answers_stay_different(a, b):
    assert math_tasks.normalise_answer(a) != math_tasks.normalise_answer(b)


def test_canonical_forms():
    n = math_tasks.normalise_answer
    assert [n("4/2"), n("-6/4"), n("-0"), n("x = 3"), n("b=2, a=1")] == ["2", "-3/2", "0", "3", "a=1,b=2"]


def test_only_the_first_line_of_a_completion_counts():
    assert math_tasks.answers_match(" 42\nQuestion: what else?", "42")
    assert not math_tasks.answers_match("\n42", "42")


def test_every_generated_answer_matches_itself_and_its_reformatting():
    for p in mathgen.split_problems("eval"):
        assert math_tasks.answers_match(f"  {p.answer}.", p.answer)


def test_in_distribution_and_extrapolation_split_the_held_out_problems():
    seen = math_tasks.load()
    harder = math_tasks.load(extrapolation=True)
    assert {t.difficulty for t in seen} == {1, 2, 3} and {t.difficulty for t in harder} == {4, 5}
    assert {t.suite for t in seen} == {"math"} and {t.suite for t in harder} == {"math_extrap"}
    first, count = mathgen.SPLIT_SEEDS["eval"]
    assert all(first <= int(t.id.split("/")[2]) < first + count for t in seen + harder)  # eval seeds
    train_questions = {p.question for p in mathgen.split_problems("train")}
    assert not any(t.prompt.split("Question: ")[-1].split("\nAnswer:")[0] in train_questions for t in seen)
    assert {t.dimension for t in seen if t.family == "word"} == {"reasoning"}
    assert {t.dimension for t in seen if t.family != "word"} == {"math"}
    assert {t.dimension for t in harder} == {"extrapolation"}


def test_filters_and_few_shot_prompts():
    tasks = math_tasks.load(families=["gcd", "linear"], per_cell=2, num_shots=3)
    assert len(tasks) == 2 * 3 * 2 and {t.family for t in tasks} == {"gcd", "linear"}
    for t in tasks:
        blocks = t.prompt.split("Question: ")[1:]
        assert len(blocks) == 4 and t.prompt.endswith("\nAnswer:")
        train = [p for p in mathgen.split_problems("train") if p.family == t.family][:3]
        assert t.prompt.startswith("".join(mathgen.render(p, "answer") for p in train))
    with pytest.raises(ValueError, match="unknown math families"):
        math_tasks.load(families=["calculus"])


def test_final_answer_after_the_last_answer_line():
    assert math_tasks.final_answer_matches(" Answer: 42\n", "42")
    assert math_tasks.final_answer_matches("Solution:\n1. 6 * 7 = 42.\nAnswer: 42.\nQuestion: x", "42")
    assert math_tasks.final_answer_matches("Answer: 41\nAnswer: x = 42", "42")  # the last one counts
    assert not math_tasks.final_answer_matches("Answer: 41\nAnswer: 43", "42")
    assert not math_tasks.final_answer_matches(" 42", "42")  # never said Answer:


def test_free_form_tasks_accept_either_form_the_training_data_has():
    tasks = math_tasks.load(free_form=True)
    assert len(tasks) == len(math_tasks.load()) and {t.suite for t in tasks} == {"math_free"}
    by_question = {p.question: p for p in mathgen.split_problems("eval")}
    for t in tasks:
        assert t.prompt.startswith("Question: ") and t.prompt.endswith("\n") and "Answer:" not in t.prompt
        p = by_question[t.prompt[len("Question: ") : -1]]
        for form in ("answer", "trace"):  # the training document's continuation after the question
            continuation = mathgen.render(p, form)[len(t.prompt) :]
            assert scoring.is_correct(t, scoring.cut_at_stop(continuation, t.stop)), (t.id, form)
    assert not scoring.is_correct(tasks[0], "Answer: not the answer")
