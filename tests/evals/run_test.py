"""Evaluating a trained checkpoint: loss per domain and generation tasks from a task file."""

import json
import os
import subprocess
import sys

import pytest

from configs import quickstart
from mixlab import configlib, train
from mixlab.evals import run, suite

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_tasks_on_a_checkpoint_and_verify_cli(tmp_path):
    c = quickstart.get_config("runlocal")
    c.train.steps = 2
    c.mesh = {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}
    train.train(c, str(tmp_path / "run"))
    task_file = tmp_path / "tasks.jsonl"
    lines = [
        {"id": "add", "prompt": "Question: 1 + 1 = ?\nAnswer:", "answer": "2"},
        {
            "id": "sq",
            "prompt": "def sq(x):\n",
            "tests": "assert sq(3) == 9",
            "entry_point": "sq",
            "solution": "    return x * x\n",
        },
        "not json",
    ]
    task_file.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    tasks, problems = suite.load([], str(task_file))
    assert [t.id for t in tasks] == ["add", "sq"] and "tasks.jsonl:3" in problems[0]
    restored = run.restore(str(tmp_path / "run"))
    path, results = run.evaluate_tasks(restored, tasks)
    assert path.endswith("eval/tasks_step_2.json") and os.path.exists(path)
    assert {item["id"] for item in results["items"]} == {"add", "sq"}  # an untrained model: scored, 0 or 1
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.eval", "--verify_tasks", str(task_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1  # the malformed line fails the check; sq passes, add has no solution
    assert "1 pass, 0 fail, 1 unchecked, 1 malformed" in proc.stdout


def test_answers_at_every_checkpoint_or_the_final_one_only():
    c = quickstart.get_config("runlocal")
    assert run.answers_due(c, 5, 10)  # default "all": every evaluated checkpoint
    c.eval.answers_steps = "final"
    assert not run.answers_due(c, 5, 10) and run.answers_due(c, 10, 10)
    c.eval.answers_steps = "last"
    with pytest.raises(configlib.ConfigError, match=r"eval\.answers_steps = 'last': unknown"):
        run.answers_due(c, 10, 10)
