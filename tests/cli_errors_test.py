"""Every entry point: bad input exits 2 with one stderr line naming the culprit (issue 13)."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from mixlab import train, workdir_lock
from tests.train_test import ROOT, config


def run(module_or_code, *args, timeout=120):
    command = ["-c", module_or_code] if "\n" in module_or_code else ["-m", module_or_code]
    return subprocess.run(
        [sys.executable, *command, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line(proc, culprit, code=2):
    """One line besides mixlab's own log lines (`HH:MM:SS message`): no traceback, no library noise."""
    lines = [line for line in proc.stderr.strip().splitlines() if not re.match(r"\d\d:\d\d:\d\d ", line)]
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and culprit in lines[0], proc.stderr


@pytest.fixture(scope="module")
def afile(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "a_file"
    path.write_text("not a directory")
    return str(path)


HUGE = "configs/code_math_study.py:scale=huge"


@pytest.mark.parametrize(
    "module, args, culprit",
    [
        (
            "experiments.train",
            ["--config", "configs/missing.py", "--workdir", "{tmp}/w"],
            "configs/missing.py",
        ),
        # Subprocesses of ~3 s each: test-fast keeps the first and the last two.
        pytest.param(
            "experiments.train",
            ["--config", HUGE, "--workdir", "{tmp}/w"],
            "scale='huge'",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "experiments.sweep",
            ["--config", HUGE, "--workdir", "{tmp}/w"],
            "scale='huge'",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "experiments.sweep",
            ["--config", "configs/quickstart.py", "--workdir", "{file}"],
            "--workdir {file}",
            marks=pytest.mark.slow,
        ),
        ("experiments.eval", ["--workdir", "{file}"], "--workdir {file} is a file"),
        pytest.param(
            "experiments.prepare",
            ["--config", "configs/quickstart.py", "--out", "{file}"],
            "--out {file} is a",
            marks=pytest.mark.slow,
        ),
        ("experiments.routing", ["--workdirs", "{tmp}", "--out", "{file}"], "--out {file} is a file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, afile, module, args, culprit):
    args = [a.format(tmp=tmp_path, file=afile) for a in args]
    assert_one_line(run(module, *args), culprit.format(file=afile))


@pytest.mark.slow
def test_corrupt_checkpoint_locked_workdir_and_full_disk(tmp_path):
    workdir = str(tmp_path / "run")
    train.train(config(steps=3), workdir)
    for root, _, files in os.walk(tmp_path / "run" / "checkpoints" / "3" / "state"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"corrupt")
    assert_one_line(run("experiments.eval", "--workdir", workdir), "checkpoint step 3 in")
    train_args = ["--config", "configs/quickstart.py:runlocal", "--config.train.steps=2"]
    train_args += ["--config.checkpoint.every=1", "--config.mesh.data=1", "--config.mesh.expert=1"]
    with workdir_lock.hold(workdir):  # held by this process: another trainer is refused, naming it
        proc = run("experiments.train", *train_args, "--workdir", workdir)
    assert_one_line(proc, f"workdir {workdir} is in use by another trainer (pid {os.getpid()} on host")
    full_disk = textwrap.dedent(f"""
        import runpy, shutil, sys
        real = shutil.disk_usage
        shutil.disk_usage = lambda p: real(p)._replace(free=1000)
        sys.argv = ["train", *{train_args!r}, "--workdir", {str(tmp_path / "full")!r}]
        runpy.run_module("experiments.train", run_name="__main__")
    """)
    proc = run(full_disk)
    assert_one_line(proc, f"not enough space to save checkpoint step 2 under {tmp_path}/full/checkpoints", 4)
    assert os.listdir(tmp_path / "full" / "checkpoints") == ["1"]
