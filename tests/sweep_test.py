"""The sweep runner: expansion, resume without redoing finished runs, consistency, launchers."""

import json
import os
import re
import textwrap

import pytest

from mixlab import configlib, sweep, train

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
    assert "arm=no_code" in runs[1].config_arg and runs[1].total_steps == 200
    cpu = sweep.expand(f"{STUDY}:scale=cpu", str(tmp_path))
    names = {r.name for r in cpu}
    # 7 claim arms (with the A/A arm) x 5 seeds, the three code-share points x 1 seed.
    assert len(cpu) == 38 and {r.seed for r in cpu} == {0, 1, 2, 3, 4}
    assert sum(r.name == "code_25" for r in cpu) == 1
    aa = next(r for r in cpu if r.name == "full_aa" and r.seed == 2)
    assert "replica=1" in aa.config_arg
    assert sweep.load_module(STUDY).get_config(aa.config_arg).seed == 1002
    assert names == {
        "full",
        "full_aa",
        "no_code",
        "no_math",
        "scaffold",
        "no_code_fill_text",
        "no_code_hold_math",
        "code_10",
        "code_25",
        "code_50",
    }


def test_code_shares_not_run_are_the_mixtures_of_their_arms():
    module = sweep.load_module(STUDY)
    for share, arm in module.SAME_AS_ARM.items():
        by_share = train.resolve(module.get_config(f"scale=cpu,code_share={share}")).mixture.as_dict()
        by_arm = train.resolve(module.get_config(f"scale=cpu,arm={arm}")).mixture.as_dict()
        assert by_share.keys() == by_arm.keys()
        for d in by_arm:
            assert by_share[d] == pytest.approx(by_arm[d], abs=1e-12), (share, arm, d)


def test_killed_sweep_does_not_redo_finished_runs(tmp_path):
    runs = sweep.expand(f"{STUDY}:scale=runlocal", str(tmp_path))
    for run in runs[:2]:  # finished before the "kill"
        os.makedirs(os.path.dirname(run.eval_path))
        for path in (run.eval_path, run.tasks_path):
            with open(path, "w") as f:
                json.dump({"step": run.total_steps}, f)
    executed = []
    failures = sweep.run_local(runs, STUDY, execute=lambda run, path: executed.append(run.name))
    assert failures == [] and sorted(executed) == ["no_code_fill_text", "scaffold"]


def test_only_missing_stages_run(tmp_path):
    run = sweep.expand(f"{STUDY}:scale=runlocal", str(tmp_path))[0]
    stages = lambda: [(c[2], *c[5:]) for c in sweep.commands(run, STUDY)]
    assert stages() == [
        ("experiments.train", "--workdir", str(tmp_path / "full" / "seed_0")),
        ("experiments.eval", "--all_steps"),
        ("experiments.eval", "--step", "200", "--tasks", "math_free,output_pred", "--math_per_cell=5"),
    ]
    os.makedirs(os.path.join(run.workdir, "checkpoints", "200"))  # trained: the final checkpoint exists
    os.makedirs(os.path.dirname(run.eval_path))
    open(run.eval_path, "w").close()  # the loss at every step was evaluated
    assert stages() == [
        ("experiments.eval", "--step", "200", "--tasks", "math_free,output_pred", "--math_per_cell=5")
    ]
    assert not run.finished
    open(run.tasks_path, "w").close()
    assert stages() == [] and run.finished


def test_analysis_per_seed_against_the_first_run_then_the_report(tmp_path, monkeypatch):
    config = study_variant(
        tmp_path / "two_seeds.py",
        """
        get_config = study.get_config
        def sweep(add, arg=None):
            for seed in (0, 1):
                add("full", seed=seed, arm="full")
                add("no_code", seed=seed, arm="no_code")
        """,
    )
    workdir = str(tmp_path / "study")
    runs = sweep.expand(str(config), workdir)
    for run in runs[:3]:  # no_code of seed 1 is not trained: seed 1 has no pair to compare
        os.makedirs(os.path.join(run.workdir, "checkpoints", str(run.total_steps)))
    cmds = sweep.analysis_commands(runs, workdir, str(config))
    assert [seed for seed, _ in cmds] == [0, None]
    routing = cmds[0][1]
    assert routing[2] == "experiments.routing"
    assert routing[routing.index("--workdirs") + 1] == f"{runs[0].workdir},{runs[1].workdir}"
    assert routing[routing.index("--reference") + 1] == runs[0].workdir
    assert routing[routing.index("--out") + 1] == os.path.join(workdir, "routing", "seed_0")
    assert "--all_steps" in routing and "--tokens_per_domain=2048" in routing and "--mask_top=" in routing
    report = ["experiments.report", "--sweep_dir", workdir, "--reference", "full", "--config", str(config)]
    assert cmds[1][1][2:] == report

    # A seed analysed over the same runs is not redone; a report is always rewritten.
    ran = []
    monkeypatch.setattr(sweep, "_run_logged", lambda cmds, log, what: ran.append(cmds[0][2]))
    os.makedirs(sweep.routing_dir(workdir, 0))
    assert sweep.analyse(runs, workdir) == [] and ran == ["experiments.routing", "experiments.report"]
    assert [seed for seed, _ in sweep.analysis_commands(runs, workdir)] == [None]


def test_run_directory_of_another_config_is_refused(tmp_path):
    runs = sweep.expand(f"{STUDY}:scale=runlocal", str(tmp_path))
    os.makedirs(runs[0].workdir)
    with open(os.path.join(runs[0].workdir, "config.json"), "w") as f:
        json.dump({"model": {}, "data": {"arm": "remove:math"}}, f)
    with pytest.raises(configlib.ConfigError, match="sweep run 'full' seed 0"):
        sweep.expand(f"{STUDY}:scale=runlocal", str(tmp_path))


@pytest.mark.parametrize(
    "arm, culprit",
    [
        ("remove:poetry", "unknown domain 'poetry'"),  # a domain no source provides
        (  # an intervention that leaves no budget
            "+".join(f"remove:{d}" for d in ("code", "text", "code_text", "math", "code_math")),
            "leaves no domain with weight",
        ),
        ("add:math_traces:-0.2", "share -0.2 must be strictly between 0 and 1"),  # a negative budget
    ],
)
def test_bad_arm_names_the_run(tmp_path, arm, culprit):
    config = study_variant(
        tmp_path / "bad_study.py",
        f"""
        def get_config(arg=None):
            c = study.get_config(arg.replace(",bad=1", "").replace("bad=1,", ""))
            if "bad=1" in arg:
                c.data.arm = {arm!r}
            return c
        def sweep(add, arg=None):
            add("full", seed=0)
            add("bad_arm", seed=0, bad=1)
        """,
    )
    with pytest.raises(configlib.ConfigError, match=rf"sweep run 'bad_arm'.*{re.escape(culprit)}"):
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
def test_real_sweep_trains_evaluates_analyses_reports_and_resumes(tmp_path):
    config = study_variant(
        tmp_path / "tiny_study.py",
        """
        def get_config(arg=None):
            c = study.get_config(arg)
            c.train.steps, c.checkpoint.every, c.checkpoint.keep_every = 2, 2, 0
            c.eval.tasks, c.eval.task_flags = "math_free", {"math_per_cell": 1}  # 24 problems
            c.mesh = {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}
            return c
        def sweep(add, arg=None):
            add("full", seed=0, arm="full")
            add("no_code", seed=0, arm="no_code")
        claims = study.claims
        """,
    )
    workdir = tmp_path / "study"
    runs = sweep.expand(str(config), str(workdir))
    assert sweep.run_local(runs, str(config), parallel=2) == []
    assert all(r.finished for r in runs)
    with open(runs[1].tasks_path) as f:
        assert len(json.load(f)["items"]) == 24
    assert sweep.analyse(runs, str(workdir), str(config)) == []
    with open(workdir / "routing" / "seed_0" / "routing.json") as f:
        assert set(json.load(f)["runs"]) == {"full", "no_code"}
    with open(workdir / "report.json") as f:
        claims = {c["id"]: c for c in json.load(f)["claims"]}
    assert claims["C1"]["primary"]["metric"] == "bpb/code"  # decided from the runs' eval files
    assert (workdir / "results.csv").exists() and (workdir / "figures" / "capability.png").exists()
    executed = []
    sweep.run_local(runs, str(config), execute=lambda run, path: executed.append(run))
    assert executed == [] and [seed for seed, _ in sweep.analysis_commands(runs, str(workdir))] == [None]


def test_sweep_sets_any_config_field(tmp_path):
    """`add(name, **{"train.lr": x})` sets a field after get_config (big_vision's sweeps): the
    resolved run, its consistency check and its training command all carry it."""
    config = study_variant(
        tmp_path / "lr_sweep.py",
        """
        get_config = study.get_config

        def sweep(add, arg=None):
            for lr in (1e-3, 3e-3):
                add(f"lr_{lr:g}", arm="full", **{"train.lr": lr, "model.routing_warmup_steps": 7})
        """,
    )
    runs = sweep.expand(f"{config}:scale=runlocal", str(tmp_path / "w"))
    assert [r.name for r in runs] == ["lr_0.001", "lr_0.003"]
    module = sweep.load_module(str(config))
    assert runs[0].config(module).train.lr == 1e-3 and runs[1].config(module).model.routing_warmup_steps == 7
    cmd = sweep.commands(runs[1], str(config))[0]
    assert cmd[-2:] == ["--config.train.lr=0.003", "--config.model.routing_warmup_steps=7"]
    bad = study_variant(
        tmp_path / "bad_field.py",
        """
        get_config = study.get_config

        def sweep(add, arg=None):
            add("typo", **{"train.learning_rate": 1e-3})
        """,
    )
    with pytest.raises(
        configlib.ConfigError, match=r"sweep run 'typo' .*no config field train.learning_rate"
    ):
        sweep.expand(f"{bad}:scale=runlocal", str(tmp_path / "w2"))
