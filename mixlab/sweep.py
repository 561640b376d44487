"""A sweep: the runs a config's `sweep(add, arg)` names, trained, evaluated, analysed and reported.

`WORKDIR/<name>/seed_<s>/` is an ordinary training workdir, so a killed sweep resumes as every run does:
each stage whose output exists is skipped (training: the final checkpoint; evaluation: the final eval
JSON files), interrupted training continues from its latest checkpoint. Runs of a sweep share the
config file and differ in its arguments. Per run:
  1. `experiments.train`
  2. `experiments.eval --all_steps`: held-out loss at every kept checkpoint (the loss curves)
  3. `experiments.eval --step FINAL --tasks T`: the generation tasks of the config's `eval.tasks`
Then, for the whole sweep (`analysis_commands`):
  4. `experiments.routing` per seed over that seed's runs, against the sweep's first run (`full`),
     with the config's `routing` flags, into WORKDIR/routing/seed_<s>/
  5. `experiments.report --sweep_dir WORKDIR`: report.md, results.csv, figures
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from mixlab import configlib, launch, train
from mixlab.metric_writer import logger
from mixlab.report.load import SWEEP_FILE

# The keys whose difference makes an existing run directory belong to another sweep.
IDENTITY_KEYS = ("model", "data", "train.steps", "train.batch_size", "seed")


@dataclasses.dataclass(frozen=True)
class Run:
    name: str  # e.g. an arm: the directory under the sweep's workdir
    seed: int
    config_arg: str  # the config file's argument string for this run
    workdir: str
    total_steps: int
    tasks: str = ""  # generation suites evaluated at the final step (config eval.tasks)
    task_flags: tuple[str, ...] = ()  # their experiments.eval flags (config eval.task_flags)
    routing_flags: tuple[str, ...] = ()  # extra experiments.routing flags (config routing)
    overrides: tuple[tuple[str, bool | int | float | str], ...] = ()  # config fields set by sweep()

    def config(self, module: ModuleType):
        """The run's config: `get_config(config_arg)` with `overrides` set (fields that must exist)."""
        config = module.get_config(self.config_arg)
        for key, value in self.overrides:
            parent, _, leaf = key.rpartition(".")
            node = config
            for part in filter(None, parent.split(".")):
                node = node.get(part)
                if node is None:
                    break
            if node is None or leaf not in node:
                raise configlib.ConfigError(
                    f"sweep run {self.name!r} (seed {self.seed}): no config field {key}"
                )
            node[leaf] = value
        return config

    @property
    def override_flags(self) -> list[str]:
        """`--config.<field>=<value>` for the training command (ml_collections config_flags)."""
        return [f"--config.{k}={v}" for k, v in self.overrides]

    @property
    def eval_path(self) -> str:
        return os.path.join(self.workdir, "eval", f"step_{self.total_steps}.json")

    @property
    def tasks_path(self) -> str:
        return os.path.join(self.workdir, "eval", f"tasks_step_{self.total_steps}.json")

    @property
    def trained(self) -> bool:
        return os.path.isdir(os.path.join(self.workdir, "checkpoints", str(self.total_steps)))

    @property
    def finished(self) -> bool:
        return os.path.exists(self.eval_path) and (not self.tasks or os.path.exists(self.tasks_path))


def load_module(config_path: str) -> ModuleType:
    return configlib.load_module(config_path, needs="sweep")


def expand(config: str, workdir: str) -> list[Run]:
    """The sweep's runs, each config resolved and validated (errors name the run)."""
    path, _, base_arg = config.partition(":")
    module = load_module(path)
    runs: list[Run] = []

    def add(name: str, *, seed: int = 0, **args) -> None:
        """`args`: the config file's arguments, or config fields by dotted name (big_vision's sweeps),
        e.g. `add("lr_low", **{"train.lr": 1e-3})`: set after get_config, passed as --config flags."""
        fields = {k: v for k, v in args.items() if "." in k}
        for key, value in fields.items():
            if not isinstance(value, bool | int | float | str):
                raise configlib.ConfigError(
                    f"sweep run {name!r}: {key} = {value!r}: a sweep sets scalar fields only "
                    "(bool, int, float, str)"
                )
        args = {k: v for k, v in args.items() if k not in fields}
        arg = ",".join(filter(None, [base_arg, *(f"{k}={v}" for k, v in args.items()), f"seed={seed}"]))
        run = Run(
            name, seed, arg, os.path.join(workdir, name, f"seed_{seed}"), 0, overrides=tuple(fields.items())
        )
        try:
            config = run.config(module)
            setup = train.resolve(config)
        except (configlib.ConfigError, ValueError) as e:
            raise configlib.ConfigError(f"sweep run {name!r} (seed {seed}, {arg}): {e}") from None
        tasks = config.get("eval", {}).get("tasks", "") or ""
        task_flags = tuple(_flags(dict(config.get("eval", {}).get("task_flags", {}))))
        routing = tuple(_flags(dict(config.get("routing", {}))))
        runs.append(
            dataclasses.replace(
                run, total_steps=setup.total_steps, tasks=tasks, task_flags=task_flags, routing_flags=routing
            )
        )

    module.sweep(add, base_arg or None)
    dirs = [r.workdir for r in runs]
    if len(set(dirs)) != len(dirs):
        raise configlib.ConfigError(
            f"{path}: sweep() names a run twice: {sorted(d for d in dirs if dirs.count(d) > 1)}"
        )
    for run in runs:
        check_consistent(run, module)
    return runs


def _flags(options: dict) -> list[str]:
    """`{"all_steps": True, "tokens_per_domain": 8192}` -> ["--all_steps", "--tokens_per_domain=8192"]."""
    out = []
    for key, value in options.items():
        if isinstance(value, bool):
            out.append(f"--{'' if value else 'no'}{key}")
        else:
            out.append(f"--{key}={','.join(map(str, value)) if isinstance(value, list | tuple) else value}")
    return out


def _identity(config_json: dict) -> dict:
    out = {}
    for key in IDENTITY_KEYS:
        node = config_json
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[key] = node
    return out


def check_consistent(run: Run, module: ModuleType) -> None:
    """A run directory made by another config (or other arguments) is an error naming the run."""
    path = os.path.join(run.workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = _identity(json.load(f))
    wanted = _identity(json.loads(run.config(module).to_json_best_effort()))
    changed = [k for k in IDENTITY_KEYS if saved[k] != wanted[k]]
    if changed:
        raise configlib.ConfigError(
            f"sweep run {run.name!r} seed {run.seed}: {run.workdir} holds a run of another config "
            f"(differs in {', '.join(changed)}); use a new --workdir"
        )


_PY = [sys.executable, "-m"]


def commands(run: Run, config_path: str) -> list[list[str]]:
    """The stages of one run whose outputs are missing (see the module docstring)."""
    out = []
    if not run.trained:
        config = f"{config_path}:{run.config_arg}"
        out.append(
            _PY + ["experiments.train", "--config", config, "--workdir", run.workdir, *run.override_flags]
        )
    if not os.path.exists(run.eval_path):
        out.append(_PY + ["experiments.eval", "--workdir", run.workdir, "--all_steps"])
    if run.tasks and not os.path.exists(run.tasks_path):
        step = ["--step", str(run.total_steps)]
        tasks = ["--tasks", run.tasks, *run.task_flags]
        out.append(_PY + ["experiments.eval", "--workdir", run.workdir, *step, *tasks])
    return out


def analysis_commands(
    runs: Sequence[Run], workdir: str, config: str = ""
) -> list[tuple[int | None, list[str]]]:
    """(seed, command) of the routing analysis per seed (the seed's trained runs against the sweep's
    first run), then (None, the report, which takes the study's claims from `config`). A seed's
    analysis is redone only when its runs changed."""
    if not runs:
        return []
    reference = runs[0].name
    out: list[tuple[int | None, list[str]]] = []
    for seed in sorted({r.seed for r in runs}):
        trained = [r for r in runs if r.seed == seed and r.trained]
        ref = [r for r in trained if r.name == reference]
        if len(trained) < 2 or not ref:
            continue
        dest = routing_dir(workdir, seed)
        if _read_json(os.path.join(dest, "sweep_runs.json")) == sorted(r.workdir for r in trained):
            continue
        ordered = ref + [r for r in trained if r is not ref[0]]
        cmd = _PY + ["experiments.routing", "--workdirs", ",".join(r.workdir for r in ordered)]
        out.append((seed, cmd + ["--reference", ref[0].workdir, "--out", dest, *runs[0].routing_flags]))
    report = _PY + ["experiments.report", "--sweep_dir", workdir, "--reference", reference]
    out.append((None, report + (["--config", config] if config else [])))
    return out


def routing_dir(workdir: str, seed: int) -> str:
    return os.path.join(workdir, "routing", f"seed_{seed}")


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _run_logged(cmds: Sequence[list[str]], log_path: str, what: str) -> str | None:
    """Runs commands in order, output appended to `log_path`; the first failure as an error line."""
    with open(log_path, "a") as log:
        for cmd in cmds:
            log.write(f"$ {' '.join(cmd[1:])}\n")
            log.flush()
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
            if proc.returncode:
                return f"{what}: {cmd[2]} exited {proc.returncode} (see {log_path})"
    return None


def _execute(run: Run, config_path: str) -> str | None:
    """Trains then evaluates one run, output to WORKDIR/sweep.log; returns an error line or None."""
    os.makedirs(run.workdir, exist_ok=True)
    log = os.path.join(run.workdir, "sweep.log")
    return _run_logged(commands(run, config_path), log, f"{run.name}/seed_{run.seed}")


def analyse(runs: Sequence[Run], workdir: str, config: str = "") -> list[str]:
    """Routing analysis and the report (output to WORKDIR/sweep.log); the failures as error lines.
    The report is written even when a seed's routing analysis failed (it then says so). `config`
    (FILE[:ARGS]) is recorded in WORKDIR/sweep.json, where `experiments.report` finds the claims."""
    log, failures = os.path.join(workdir, "sweep.log"), []
    if config:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, SWEEP_FILE), "w") as f:
            json.dump({"config": config}, f)
    for seed, cmd in analysis_commands(runs, workdir, config):
        error = _run_logged([cmd], log, "report" if seed is None else f"routing seed {seed}")
        if error:
            failures.append(error)
        elif seed is not None:  # the runs this analysis covered, so an unchanged seed is skipped
            with open(os.path.join(routing_dir(workdir, seed), "sweep_runs.json"), "w") as f:
                json.dump(sorted(r.workdir for r in runs if r.seed == seed and r.trained), f)
    return failures


def run_local(
    runs: Sequence[Run], config_path: str, *, parallel: int = 1, execute: Callable = _execute
) -> list[str]:
    """Runs the unfinished runs, `parallel` at a time; returns the failures (the others still run)."""
    todo = [r for r in runs if not r.finished]
    for r in runs:
        if r.finished:
            logger.info("%s/seed_%d: finished, skipped", r.name, r.seed)
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {pool.submit(execute, r, config_path): r for r in todo}
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            run, error = futures[future], future.result()
            logger.info("[%d/%d] %s/seed_%d %s", i, len(todo), run.name, run.seed, error or "done")
            if error:
                failures.append(error)
    return failures


def remote_commands(runs: Sequence[Run], config_path: str, launcher: str, **spec) -> list[list[str]]:
    """One training job per unfinished run: TPU VM commands (`spec`: TpuSpec fields but name) or an
    sbatch script written to WORKDIR/job.sbatch (`spec`: SlurmSpec fields but job_name). Re-running the
    sweep with the local launcher once the jobs are done evaluates the runs (training is then skipped)."""
    out = []
    for run in (r for r in runs if not r.finished):
        config = f"{config_path}:{run.config_arg}"
        name = f"{spec.get('name', 'mixlab')}-{run.name}-s{run.seed}".replace("_", "-")
        if launcher == "tpu":
            tpu = launch.TpuSpec(**{**spec, "name": name})
            out += launch.tpu_commands(tpu, config, run.workdir, run.override_flags)
        else:
            script = launch.slurm_script(
                launch.SlurmSpec(job_name=name, **spec), config, run.workdir, run.override_flags
            )
            os.makedirs(run.workdir, exist_ok=True)
            path = os.path.join(run.workdir, "job.sbatch")
            with open(path, "w") as f:
                f.write(script)
            out.append(["sbatch", path])
    return out
