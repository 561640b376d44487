"""Multi-host start-up: `jax.distributed.initialize`, explicit or detected.

- `--distributed` (what `experiments.launch` passes on TPU VMs and SLURM): `initialize()` with no
  arguments; JAX detects the cluster (TPU metadata server, SLURM environment). A SLURM job with several
  tasks is also detected without the flag.
- Anything else with several processes (a GPU cluster without SLURM, two local CPU processes in tests):
  `--coordinator_address host:port --num_processes N --process_id i`.
Must run before any other JAX call.
"""

from __future__ import annotations

import os

import jax


def in_multi_task_slurm_job() -> bool:
    return "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
) -> None:
    if coordinator_address:
        if num_processes is None or process_id is None:
            raise ValueError("--coordinator_address needs --num_processes and --process_id")
        # Collectives between CPU processes (tests, laptops); the setting does not affect GPU/TPU backends.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    elif auto or in_multi_task_slurm_job():
        jax.distributed.initialize()
