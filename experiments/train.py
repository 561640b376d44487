"""Trains (or resumes) one run; re-running the same command resumes from the latest checkpoint.

  python -m experiments.train --config configs/quickstart.py --workdir runs/quickstart
  python -m experiments.train --config configs/quickstart.py:size=nano,runlocal --workdir DIR \\
      --config.train.steps=20
"""

from absl import flags
from ml_collections import config_flags

from mixlab import cli, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:args].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])
cli.directory_flags("workdir")


def main() -> None:
    train.train(_CONFIG.value, _WORKDIR.value)
    print(f"workdir: {_WORKDIR.value}")


if __name__ == "__main__":
    cli.run(main)
