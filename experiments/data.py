"""Mixture audit of one config's arm: requested vs realised tokens per domain, epochs, delta to base.

  python -m experiments.data --config configs/quickstart.py --workdir runs/audit
  python -m experiments.data --config configs/quickstart.py --workdir runs/audit_nocode \\
      --config.data.arm=remove:code:fill:text --sequences 4000

Writes WORKDIR/data_audit.json (fields in mixlab/data/audit.py) and prints it as a table.
"""

from absl import flags
from ml_collections import config_flags

from mixlab import cli
from mixlab.data import audit

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:args].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for data_audit.json.")
_SEQUENCES = flags.DEFINE_integer("sequences", 2000, "Sequences to draw from the pipeline (N).")
flags.mark_flags_as_required(["config", "workdir"])
cli.directory_flags("workdir")


def main() -> None:
    path, report = audit.run(_CONFIG.value, _WORKDIR.value, sequences=_SEQUENCES.value)
    print(audit.format_table(report))
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
