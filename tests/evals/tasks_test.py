"""Task files: malformed lines reported by file:line while the rest run; verification of references."""

import dataclasses
import json

import pytest

from mixlab.configlib import ConfigError
from mixlab.evals import humaneval, sandbox, scoring, suite, tasks
from tests.evals import fakes

ADD = {
    "id": "add",
    "prompt": "def add(a, b):\n",
    "tests": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
    "entry_point": "add",
    "solution": "    return a + b\n",
}
LINES = [
    json.dumps({"id": "two", "prompt": "Question: 1 + 1?\nAnswer:", "answer": 2}),  # 1: exact, numeric answer
    json.dumps(ADD),  # 2: exec, passes
    "",  # 3: blank, ignored
    '{"id": "broken", "prompt": ',  # 4: not JSON
    json.dumps({"id": "neither", "prompt": "p"}),  # 5: no answer nor tests
    json.dumps({**ADD, "id": "wrong", "solution": "    return a - b\n"}),  # 6: exec, reference fails
    json.dumps({"id": "typo", "prompt": "p", "answer": "1", "anwser": "1"}),  # 7: unknown field
    json.dumps({**ADD, "solution": "    return b + a\n"}),  # 8: repeats id "add"
    json.dumps(["not", "an", "object"]),  # 9
    json.dumps(  # 10: MBPP-style plain asserts, whole function written by the model, no reference
        {
            "id": "mbpp",
            "prompt": "Write sq(x).",
            "prefix": "",
            "tests": "assert sq(3) == 9\n",
            "entry_point": "sq",
        }
    ),
    json.dumps(
        {
            "id": "loop",
            **{k: ADD[k] for k in ("prompt", "tests", "entry_point")},
            "solution": "    while True:\n        pass\n",
        }
    ),  # 11: reference never returns
]


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "extra.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    return str(path)


def test_malformed_lines_are_reported_by_line_and_skipped(task_file):
    loaded, problems = tasks.load_file(task_file)
    assert [t.id for t in loaded] == ["two", "add", "wrong", "mbpp", "loop"]
    assert [p.split(": ", 1)[0] for p in problems] == [f"{task_file}:{n}" for n in (4, 5, 7, 8, 9)]
    assert "not valid JSON" in problems[0] and "either 'answer'" in problems[1]
    assert "anwser" in problems[2] and "repeats" in problems[3] and "JSON object" in problems[4]
    two, add = loaded[0], loaded[1]
    assert (two.kind, two.answer, two.suite, two.stop) == ("exact", "2", "file:extra", ("\n",))
    assert (add.kind, add.dimension, add.stop) == ("exec", "programming", tasks.CODE_STOPS)


def test_the_remaining_tasks_still_run(task_file):
    loaded, problems = suite.load([], task_file=task_file)
    assert len(loaded) == 5 and len(problems) == 5
    runnable = [t for t in loaded if t.id in ("two", "add")]
    results = suite.evaluate(runnable, fakes.oracle(runnable))
    assert {r["id"]: r["score"] for r in results["items"]} == {"two": 1.0, "add": 1.0}


def test_verify_tasks_runs_each_reference_solution(task_file):
    report = suite.verify_tasks(task_file, limits=sandbox.Limits(timeout_s=2, cpu_s=2))
    status = {r["id"]: r["status"] for r in report["tasks"]}
    assert status == {"two": "unchecked", "add": "pass", "wrong": "fail", "mbpp": "unchecked", "loop": "fail"}
    reasons = {r["id"]: r.get("exit_reason") for r in report["tasks"]}
    assert reasons["wrong"] == "error" and reasons["loop"] == "timeout"
    assert report["counts"] == {"pass": 1, "fail": 2, "unchecked": 2, "malformed": 5}
    text = suite.format_report(report)
    assert "FAIL wrong (error)" in text and f"SKIPPED {task_file}:4:" in text


def test_programs_join_prefix_completion_and_tests():
    add = tasks.Task(
        id="a", prompt=ADD["prompt"], kind="exec", suite="s", tests=ADD["tests"], entry_point="add"
    )
    expected = ADD["prompt"] + "    return a + b\n\n" + ADD["tests"] + "\n\ncheck(add)\n"
    assert tasks.program(add, "    return a + b") == expected
    plain = tasks.Task(
        id="b",
        prompt="Write sq.",
        kind="exec",
        suite="s",
        tests="assert sq(3) == 9\n",
        entry_point="sq",
        prefix="",
    )
    source = tasks.program(plain, "def sq(x):\n    return x * x")
    assert source.startswith("def sq(x):") and "check(" not in source
    checked = dataclasses.replace(plain, solution="def sq(x):\n    return x * x")
    assert scoring.verify([checked])[0]["status"] == "pass"


def test_suites_by_name():
    loaded, problems = suite.load(["math_extrap", "code_gen"], math_per_cell=1)
    assert {t.suite for t in loaded} == {"math_extrap", "code_gen"} and problems == []
    with pytest.raises(ConfigError, match="unknown task suite"):
        suite.load(["math", "mmlu"])
    with pytest.raises(ConfigError, match="not found"):
        suite.load([], task_file="/nonexistent.jsonl")


def test_humaneval_is_read_from_the_installed_package():
    loaded = humaneval.load()
    assert len(loaded) == 164 and loaded[0].id == "HumanEval/0"
    assert all(t.kind == "exec" and t.solution and t.entry_point and "def check" in t.tests for t in loaded)


@pytest.mark.slow
def test_every_humaneval_reference_solution_passes_in_the_sandbox():
    report = scoring.verify(humaneval.load(), workers=2)
    failed = [r for r in report if r["status"] != "pass"]
    assert len(report) == 164 and failed == []
