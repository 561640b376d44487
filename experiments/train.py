"""Trains (or resumes) one run.

  python -m experiments.train --config configs/quickstart.py --workdir /tmp/mixlab/quickstart
  python -m experiments.train --config configs/quickstart.py:size=nano,runlocal --workdir DIR \
      --config.train.steps=20
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from mixlab import configlib, metrics, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    metrics.setup_logging()
    try:
        train.train(_CONFIG.value, _WORKDIR.value)
    except configlib.ConfigError as e:
        sys.exit(f"error: {e}")
    print(f"workdir: {_WORKDIR.value}")


if __name__ == "__main__":
    app.run(main)
