"""What every `experiments/` entry point shares: flag parsing whose errors are one line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app, flags

from mixlab import configlib, distributed, metrics

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for multi-process runs outside TPU VMs and SLURM."
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Number of processes (with --coordinator_address)."
)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "jax.distributed.initialize() with cluster auto-detection (TPU VMs, SLURM)."
)


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        # A config file that raises is reported with its traceback embedded: keep the first and last lines.
        lines = [line for line in str(e).splitlines() if line.strip()]
        sys.exit(f"error: {lines[0]} {lines[-1]}" if len(lines) > 1 else f"error: {e}")
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        # ml_collections raises these for `--config.a.b=v` overrides of keys the config does not have.
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        sys.exit(f"error: the config has no key {e} (overrides given: {' '.join(overrides)})")


def run(main: Callable[[], None]) -> None:
    """Runs `main()` with parsed flags; bad input (`ConfigError`, exit 2) and a non-finite loss (exit 3)
    are printed as one line, not a traceback."""

    def wrapped(argv: list[str]) -> None:
        if len(argv) > 1:
            sys.exit(f"error: unexpected arguments {argv[1:]}")
        metrics.setup_logging()
        try:
            with configlib.errors_as_config_errors():
                distributed.initialize(
                    _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, auto=_DISTRIBUTED.value
                )
            main()
        except configlib.ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except FloatingPointError as e:  # the NaN guard: the run stopped, its last good checkpoint is kept
            print(f"error: {e}", file=sys.stderr)
            sys.exit(3)

    app.run(wrapped, flags_parser=_parse_flags)
