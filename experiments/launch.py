"""Launches a run on TPU VMs or a SLURM GPU cluster (`--dry_run` prints what it would do).

  python -m experiments.launch tpu --name mixlab-v5 --zone us-west4-a --accelerator_type v5litepod-16 \\
      --runtime_version v2-alpha-tpuv5-lite --config configs/quickstart.py:size=small \\
      --workdir /mnt/shared/runs/qs --dry_run
  python -m experiments.launch slurm --nodes 2 --gpus_per_node 8 --config configs/quickstart.py \\
      --workdir /shared/runs/qs --dry_run
"""

import os

from absl import flags

from mixlab import cli, configlib, launch

flags.DEFINE_string("config", None, "Config file[:args], as for experiments.train.")
flags.DEFINE_string(
    "workdir", None, "Run directory: a path every worker sees (NFS/Filestore, a gcsfuse mount)."
)
flags.DEFINE_bool("dry_run", False, "Print the commands (or the sbatch script) instead of running them.")
flags.DEFINE_string("name", "mixlab", "TPU VM / queued-resource name, or SLURM job name.")
flags.DEFINE_string("zone", None, "TPU zone.")
flags.DEFINE_string("project", None, "GCP project (default: gcloud's).")
flags.DEFINE_string("accelerator_type", "v5litepod-8", "TPU type.")
flags.DEFINE_string("runtime_version", "v2-alpha-tpuv5-lite", "TPU VM software version.")
flags.DEFINE_bool("queued", False, "Create the TPU through a queued resource.")
flags.DEFINE_bool("spot", False, "Spot (preemptible) TPU capacity.")
flags.DEFINE_integer("nodes", 1, "SLURM nodes.")
flags.DEFINE_integer("gpus_per_node", 8, "GPUs per SLURM node.")
flags.DEFINE_string("partition", None, "SLURM partition.")
flags.DEFINE_string("account", None, "SLURM account.")
flags.DEFINE_multi_string(
    "train_arg", [], "Extra flag for experiments.train, e.g. --train_arg=--config.train.steps=10."
)
flags.mark_flags_as_required(["config", "workdir"])
F = flags.FLAGS


def main(args: list[str]) -> None:
    if len(args) != 1 or args[0] not in ("tpu", "slurm"):
        raise configlib.ConfigError(f"expected one command, tpu or slurm, got {args}")
    if args[0] == "tpu":
        if not F.zone:
            raise configlib.ConfigError("tpu needs --zone")
        spec = launch.TpuSpec(
            F.name, F.zone, F.accelerator_type, F.runtime_version, F.project, F.queued, F.spot
        )
        launch.run(launch.tpu_commands(spec, F.config, F.workdir, F.train_arg), dry_run=F.dry_run)
        return
    spec = launch.SlurmSpec(
        F.name, F.nodes, F.gpus_per_node, partition=F.partition, account=F.account, project_dir=os.getcwd()
    )
    launch.submit_slurm(launch.slurm_script(spec, F.config, F.workdir, F.train_arg), dry_run=F.dry_run)


if __name__ == "__main__":
    cli.run(main, positional=True)
