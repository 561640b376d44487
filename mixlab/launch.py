"""Launching a run on a TPU VM (or queued resource) or a SLURM GPU cluster: the commands, made visible.

`tpu_commands` and `slurm_script` only build text; `run` executes it (or prints it with --dry_run).
The project is shipped as `git archive HEAD` so every worker runs exactly the committed code.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import tempfile

PROJECT_DIR = "mixlab"  # on every worker, under the login user's home


@dataclasses.dataclass(frozen=True)
class TpuSpec:
    name: str
    zone: str
    accelerator_type: str  # e.g. v5litepod-16 (4 hosts), v4-32
    runtime_version: str  # e.g. v2-alpha-tpuv5-lite, tpu-ubuntu2204-base
    project: str | None = None
    queued: bool = False  # create through a queued resource (waits for capacity) instead of directly
    spot: bool = False


def _gcloud(spec: TpuSpec, *args: str) -> list[str]:
    cmd = ["gcloud", "compute", "tpus", *args, f"--zone={spec.zone}"]
    return [*cmd, f"--project={spec.project}"] if spec.project else cmd


def train_command(config: str, workdir: str, extra: list[str]) -> str:
    return " ".join(
        ["python", "-m", "experiments.train", "--distributed", f"--config={shlex.quote(config)}"]
        + [f"--workdir={shlex.quote(workdir)}"]
        + [shlex.quote(a) for a in extra]
    )


def tpu_commands(spec: TpuSpec, config: str, workdir: str, extra: list[str]) -> list[list[str]]:
    """create-or-reuse, ship the code, install, start training on all workers (in that order)."""
    if spec.queued:
        create = _gcloud(
            spec,
            "queued-resources",
            "create",
            spec.name,
            f"--node-id={spec.name}",
            f"--accelerator-type={spec.accelerator_type}",
            f"--runtime-version={spec.runtime_version}",
        )
    else:
        create = _gcloud(
            spec,
            "tpu-vm",
            "create",
            spec.name,
            f"--accelerator-type={spec.accelerator_type}",
            f"--version={spec.runtime_version}",
        )
    if spec.spot:
        create.append("--spot")
    # `describe || create` reuses an existing VM; the shell runs it locally.
    describe = _gcloud(spec, "tpu-vm", "describe", spec.name)
    reuse_or_create = ["bash", "-c", f"{shlex.join(describe)} >/dev/null 2>&1 || {shlex.join(create)}"]
    archive = [
        "bash",
        "-c",
        f"git archive --format=tar.gz --prefix={PROJECT_DIR}/ -o /tmp/mixlab.tar.gz HEAD",
    ]
    copy = _gcloud(spec, "tpu-vm", "scp", "/tmp/mixlab.tar.gz", f"{spec.name}:~/", "--worker=all")
    install = (
        f"rm -rf {PROJECT_DIR} && tar xzf mixlab.tar.gz && cd {PROJECT_DIR} && python3 -m venv .venv && "
        ".venv/bin/pip install -q -c requirements.lock -e . 'jax[tpu]'"
    )
    setup = _gcloud(spec, "tpu-vm", "ssh", spec.name, "--worker=all", f"--command={install}")
    start = (
        f"cd {PROJECT_DIR} && nohup .venv/bin/{train_command(config, workdir, extra)} "
        "> train.log 2>&1 < /dev/null &"
    )
    run = _gcloud(spec, "tpu-vm", "ssh", spec.name, "--worker=all", f"--command={start}")
    return [reuse_or_create, archive, copy, setup, run]


@dataclasses.dataclass(frozen=True)
class SlurmSpec:
    job_name: str
    nodes: int
    gpus_per_node: int
    time: str = "24:00:00"
    partition: str | None = None
    account: str | None = None
    project_dir: str = "."  # a shared filesystem path holding the project with its .venv


def slurm_script(spec: SlurmSpec, config: str, workdir: str, extra: list[str]) -> str:
    """One task per node; `jax.distributed.initialize()` reads the SLURM environment in each task."""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={spec.job_name}",
        f"#SBATCH --nodes={spec.nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={spec.gpus_per_node}",
        f"#SBATCH --time={spec.time}",
        f"#SBATCH --output={workdir}/slurm-%j.out",
        # Preemption: SIGTERM 120 s before the time limit, so the run saves and can be requeued.
        "#SBATCH --signal=TERM@120",
        "#SBATCH --requeue",
    ]
    if spec.partition:
        lines.append(f"#SBATCH --partition={spec.partition}")
    if spec.account:
        lines.append(f"#SBATCH --account={spec.account}")
    lines += [
        "set -euo pipefail",
        f"cd {shlex.quote(spec.project_dir)}",
        f"srun .venv/bin/{train_command(config, workdir, extra)}",
    ]
    return "\n".join(lines) + "\n"


def run(commands: list[list[str]], *, dry_run: bool) -> None:
    for cmd in commands:
        print(shlex.join(cmd), flush=True)
        if not dry_run:
            subprocess.run(cmd, check=True)


def submit_slurm(script: str, *, dry_run: bool) -> None:
    if dry_run:
        print(script, end="")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".sbatch", delete=False) as f:
        f.write(script)
    run([["sbatch", f.name]], dry_run=False)
