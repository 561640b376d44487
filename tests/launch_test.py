"""Launch dry-runs produce the expected commands; nothing is executed."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.launch", *args, "--config", "configs/quickstart.py:size=small"]
        + ["--workdir", "/mnt/shared/runs/qs", "--dry_run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_tpu_dry_run():
    out = launch(
        "tpu",
        "--name",
        "exp1",
        "--zone",
        "us-west4-a",
        "--accelerator_type",
        "v5litepod-16",
        "--train_arg=--config.train.steps=10",
    )
    lines = out.strip().splitlines()
    assert len(lines) == 5
    assert "tpu-vm describe exp1 --zone=us-west4-a" in lines[0]
    assert "tpu-vm create exp1 --accelerator-type=v5litepod-16" in lines[0]
    assert lines[1].startswith("bash -c 'git archive")
    assert "tpu-vm scp /tmp/mixlab.tar.gz" in lines[2] and "--worker=all" in lines[2]
    assert "pip install -q -c requirements.lock -e ." in lines[3] and "--worker=all" in lines[3]
    assert "python -m experiments.train --distributed --config=configs/quickstart.py:size=small" in lines[4]
    assert "--workdir=/mnt/shared/runs/qs --config.train.steps=10" in lines[4]


def test_tpu_queued_resource_dry_run():
    out = launch("tpu", "--name", "exp2", "--zone", "us-central2-b", "--queued", "--spot")
    create = out.splitlines()[0]
    assert "queued-resources create exp2 --node-id=exp2" in create and "--spot" in create


def test_slurm_dry_run():
    out = launch("slurm", "--nodes", "4", "--gpus_per_node", "8", "--partition", "gpu")
    assert out.startswith("#!/bin/bash\n")
    for line in (
        "#SBATCH --nodes=4",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --signal=TERM@120",
    ):
        assert line in out.splitlines()
    assert (
        "srun .venv/bin/python -m experiments.train --distributed --config=configs/quickstart.py:size=small"
        in out
    )
