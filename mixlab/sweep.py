"""A sweep: the runs a config's `sweep(add, arg)` names, trained and evaluated under one directory.

`WORKDIR/<name>/seed_<s>/` is an ordinary training workdir, so a killed sweep resumes as every run does:
finished runs (their final eval JSON exists) are skipped, interrupted ones continue from their latest
checkpoint. Runs of a sweep share the config file and differ in its arguments.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from mixlab import configlib, launch, train
from mixlab.metrics import logger

# The keys whose difference makes an existing run directory belong to another sweep.
IDENTITY_KEYS = ("model", "data", "train.steps", "train.batch_size", "seed")


@dataclasses.dataclass(frozen=True)
class Run:
    name: str  # e.g. an arm: the directory under the sweep's workdir
    seed: int
    config_arg: str  # the config file's argument string for this run
    workdir: str
    total_steps: int

    @property
    def eval_path(self) -> str:
        return os.path.join(self.workdir, "eval", f"step_{self.total_steps}.json")

    @property
    def finished(self) -> bool:
        return os.path.exists(self.eval_path)


def load_module(config_path: str) -> ModuleType:
    if not os.path.exists(config_path):
        raise configlib.ConfigError(f"--config {config_path}: no such file")
    spec = importlib.util.spec_from_file_location("mixlab_sweep_config", config_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "sweep"):
        raise configlib.ConfigError(f"{config_path} has no sweep(add, arg) function")
    return module


def expand(config: str, workdir: str) -> list[Run]:
    """The sweep's runs, each config resolved and validated (errors name the run)."""
    path, _, base_arg = config.partition(":")
    module = load_module(path)
    runs: list[Run] = []

    def add(name: str, *, seed: int = 0, **args) -> None:
        arg = ",".join(filter(None, [base_arg, *(f"{k}={v}" for k, v in args.items()), f"seed={seed}"]))
        try:
            setup = train.resolve(module.get_config(arg))
        except (configlib.ConfigError, ValueError) as e:
            raise configlib.ConfigError(f"sweep run {name!r} (seed {seed}, {arg}): {e}") from None
        runs.append(Run(name, seed, arg, os.path.join(workdir, name, f"seed_{seed}"), setup.total_steps))

    module.sweep(add, base_arg or None)
    dirs = [r.workdir for r in runs]
    if len(set(dirs)) != len(dirs):
        raise configlib.ConfigError(
            f"{path}: sweep() names a run twice: {sorted(d for d in dirs if dirs.count(d) > 1)}"
        )
    for run in runs:
        check_consistent(run, module)
    return runs


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
    wanted = _identity(json.loads(module.get_config(run.config_arg).to_json_best_effort()))
    changed = [k for k in IDENTITY_KEYS if saved[k] != wanted[k]]
    if changed:
        raise configlib.ConfigError(
            f"sweep run {run.name!r} seed {run.seed}: {run.workdir} holds a run of another config "
            f"(differs in {', '.join(changed)}); use a new --workdir"
        )


def commands(run: Run, config_path: str) -> list[list[str]]:
    py = [sys.executable, "-m"]
    config = f"{config_path}:{run.config_arg}"
    return [
        py + ["experiments.train", "--config", config, "--workdir", run.workdir],
        py + ["experiments.eval", "--workdir", run.workdir, "--step", str(run.total_steps)],
    ]


def _execute(run: Run, config_path: str) -> str | None:
    """Trains then evaluates one run, output to WORKDIR/sweep.log; returns an error line or None."""
    os.makedirs(run.workdir, exist_ok=True)
    with open(os.path.join(run.workdir, "sweep.log"), "a") as log:
        for cmd in commands(run, config_path):
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
            if proc.returncode:
                return f"{run.name}/seed_{run.seed}: {cmd[2]} exited {proc.returncode} (see {log.name})"
    return None


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
            out += launch.tpu_commands(tpu, config, run.workdir, [])
        else:
            script = launch.slurm_script(launch.SlurmSpec(job_name=name, **spec), config, run.workdir, [])
            os.makedirs(run.workdir, exist_ok=True)
            path = os.path.join(run.workdir, "job.sbatch")
            with open(path, "w") as f:
                f.write(script)
            out.append(["sbatch", path])
    return out
