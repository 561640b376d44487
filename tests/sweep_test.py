"""The sweep runner: expansion, resume without redoing finished runs, consistency, launchers."""

import json
import os
import textwrap

import pytest

from mixlab import configlib, sweep

STUDY = "configs/code_math_study.py"


def study_variant(path, body: str):
    """A config file that imports the study as `study` and defines `body` (get_config, sweep)."""
    preamble = f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("study", {os.path.abspath(STUDY)!r})
        study = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(study)
    """
    path.write_text(textwrap.dedent(preamble) + textwrap.dedent(body))
    return path


def test_expands_to_the_expected_runs(tmp_path):
    runs = sweep.expand(f"{STUDY}:scale=runlocal", str(tmp_path))
    assert [(r.name, r.seed) for r in runs] == [
        ("full", 0),
        ("no_code", 0),
        ("scaffold", 0),
        ("no_code_fill_text", 0),
    ]
    assert runs[1].workdir == str(tmp_path / "no_code" / "seed_0")
    assert "arm=no_code" in runs[1].config_arg and runs[1].total_steps == 40
    cpu = sweep.expand(f"{STUDY}:scale=cpu", str(tmp_path))
    names = {r.name for r in cpu}
    assert len(cpu) == 20 and {r.seed for r in cpu} == {0, 1}
    assert names == {
        "full",
        "no_code",
        "no_math",
        "scaffold",
        "no_code_fill_text",
        "no_code_hold_math",
        "code_0",
        "code_10",
        "code_25",
        "code_50",
    }


def test_killed_sweep_does_not_redo_finished_runs(tmp_path):
    runs = sweep.expand(f"{STUDY}:scale=runlocal", str(tmp_path))
    for run in runs[:2]:  # finished before the "kill"
        os.makedirs(os.path.dirname(run.eval_path))
        with open(run.eval_path, "w") as f:
            json.dump({"step": run.total_steps}, f)
    executed = []
    failures = sweep.run_local(runs, STUDY, execute=lambda run, path: executed.append(run.name))
    assert failures == [] and sorted(executed) == ["no_code_fill_text", "scaffold"]


def test_run_directory_of_another_config_is_refused(tmp_path):
    runs = sweep.expand(f"{STUDY}:scale=runlocal", str(tmp_path))
    os.makedirs(runs[0].workdir)
    with open(os.path.join(runs[0].workdir, "config.json"), "w") as f:
        json.dump({"model": {}, "data": {"arm": "remove:math"}}, f)
    with pytest.raises(configlib.ConfigError, match="sweep run 'full' seed 0"):
        sweep.expand(f"{STUDY}:scale=runlocal", str(tmp_path))


def test_bad_arm_names_the_run(tmp_path):
    config = study_variant(
        tmp_path / "bad_study.py",
        """
        def get_config(arg=None):
            c = study.get_config(arg.replace(",poetry=1", ""))
            if "poetry" in arg:
                c.data.arm = "remove:poetry"
            return c
        def sweep(add, arg=None):
            add("full", seed=0)
            add("no_poetry", seed=0, poetry=1)
        """,
    )
    with pytest.raises(configlib.ConfigError, match=r"sweep run 'no_poetry'.*poetry"):
        sweep.expand(str(config), str(tmp_path / "runs"))


def test_remote_launchers_one_job_per_unfinished_run(tmp_path):
    runs = sweep.expand(f"{STUDY}:scale=runlocal", str(tmp_path))
    tpu = sweep.remote_commands(
        runs,
        STUDY,
        "tpu",
        zone="us-west4-a",
        accelerator_type="v5litepod-8",
        runtime_version="v2-alpha-tpuv5-lite",
    )
    assert len(tpu) == 4 * 5 and "create mixlab-no-code-s0" in tpu[5][2]  # 5 commands per run
    slurm = sweep.remote_commands(runs, STUDY, "slurm", nodes=1, gpus_per_node=8)
    assert [c[0] for c in slurm] == ["sbatch"] * 4
    with open(slurm[1][1]) as f:
        assert "arm=no_code" in f.read()


@pytest.mark.slow
def test_real_sweep_trains_evaluates_and_resumes(tmp_path):
    config = study_variant(
        tmp_path / "tiny_study.py",
        """
        def get_config(arg=None):
            c = study.get_config(arg)
            c.train.steps, c.checkpoint.every, c.checkpoint.keep_every = 2, 2, 0
            c.mesh = {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}
            return c
        def sweep(add, arg=None):
            add("no_code", seed=0, arm="no_code")
        """,
    )
    runs = sweep.expand(str(config), str(tmp_path / "study"))
    assert sweep.run_local(runs, str(config)) == []
    assert runs[0].finished
    with open(runs[0].eval_path) as f:
        assert json.load(f)["step"] == 2
    executed = []
    sweep.run_local(runs, str(config), execute=lambda run, path: executed.append(run))
    assert executed == []
