"""Runs a study: every run of a config's `sweep(add, arg)` is trained and evaluated, then the routing
analysis and the report (WORKDIR/report.md) are written.

  python -m experiments.sweep --config configs/code_math_study.py:scale=runlocal --workdir runs/study
  python -m experiments.sweep --config configs/code_math_study.py:scale=cpu --workdir runs/cpu --parallel 2
  python -m experiments.sweep --config configs/code_math_study.py:scale=tpu --workdir /mnt/shared/study \\
      --launcher tpu --zone us-west4-a --dry_run

Runs live in WORKDIR/<name>/seed_<s>/; finished stages are skipped, interrupted runs resume. tpu|slurm:
one training job per run; re-run locally afterwards to evaluate, analyse and report.
"""

import os
import sys

from absl import flags

from mixlab import cli, configlib, sweep

_CONFIG = flags.DEFINE_string("config", None, "Config file[:args] with a sweep(add, arg) function.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory.")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "tpu", "slurm"], "Where runs execute.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Local runs at a time.")
_REPORT = flags.DEFINE_bool("report", True, "local: analyse routing and write the report after the runs.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "tpu/slurm: print the commands instead of running them.")
_ZONE = flags.DEFINE_string("zone", None, "tpu: zone.")
_ACCELERATOR = flags.DEFINE_string("accelerator_type", "v5litepod-256", "tpu: accelerator type.")
_RUNTIME = flags.DEFINE_string("runtime_version", "v2-alpha-tpuv5-lite", "tpu: runtime version.")
_NODES = flags.DEFINE_integer("nodes", 1, "slurm: nodes per run.")
_GPUS = flags.DEFINE_integer("gpus_per_node", 8, "slurm: GPUs per node.")
flags.mark_flags_as_required(["config", "workdir"])
cli.directory_flags("workdir")


def main() -> None:
    runs = sweep.expand(_CONFIG.value, _WORKDIR.value)
    config_path = _CONFIG.value.partition(":")[0]
    if _LAUNCHER.value == "local":
        failures = sweep.run_local(runs, config_path, parallel=_PARALLEL.value)
        if _REPORT.value:
            failures += sweep.analyse(runs, _WORKDIR.value, _CONFIG.value)
        if failures:
            sys.exit("error: " + "; ".join(failures))
        print(f"sweep: {len(runs)} runs finished under {_WORKDIR.value}")
        if _REPORT.value:
            print(f"report: {os.path.join(_WORKDIR.value, 'report.md')}")
        return
    if _LAUNCHER.value == "tpu":
        if not _ZONE.value:
            raise configlib.ConfigError("--launcher tpu needs --zone")
        spec = dict(zone=_ZONE.value, accelerator_type=_ACCELERATOR.value, runtime_version=_RUNTIME.value)
    else:
        spec = dict(nodes=_NODES.value, gpus_per_node=_GPUS.value)
    commands = sweep.remote_commands(runs, config_path, _LAUNCHER.value, **spec)
    sweep.launch.run(commands, dry_run=_DRY_RUN.value)


if __name__ == "__main__":
    cli.run(main)
