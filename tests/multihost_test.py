"""Two local processes (gloo, 2 CPU devices each) train exactly like one process with 4 devices."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--config", "configs/quickstart.py:runlocal", "--config.train.steps=4", "--config.train.log_every=1"]
ARGS += ["--config.checkpoint.every=2", "--config.mesh.data=-1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(workdir, devices: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.train", *ARGS, "--workdir", str(workdir), *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def losses(workdir) -> dict[int, float]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["train/loss"] for r in map(json.loads, f)}


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    port = free_port()
    procs = [
        start(
            tmp_path / "two",
            2,
            f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2",
            f"--process_id={i}",
        )
        for i in range(2)
    ]
    single = start(tmp_path / "one", 4)
    for p in [*procs, single]:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert sorted(two) == [1, 2, 3, 4]
    np.testing.assert_allclose([two[s] for s in sorted(two)], [one[s] for s in sorted(two)], rtol=1e-5)
    # Collective checkpoints: both processes' data-iterator states beside one copy of the arrays.
    data_dir = tmp_path / "two" / "checkpoints" / "4" / "data"
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= set(os.listdir(data_dir))
