"""What every `experiments/` entry point shares: errors of the user's input are one line, not a traceback.

Exit codes: 0 done; 2 bad input (flags, config file, config keys and values, paths, a workdir in use or
of another run, an unreadable checkpoint asked for); 3 a non-finite loss (the run stopped); 4 the disk is
full; 130 interrupted (a third stop signal). An exception raised by the code of a
`--config` file is bad input too, named by file and line. Anything else is a bug: it keeps its traceback.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import app, flags

from mixlab import configlib, distributed, metric_writer

EXIT_USAGE, EXIT_NONFINITE, EXIT_DISK_FULL, EXIT_INTERRUPTED = 2, 3, 4, 130

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


def fail(message: object, code: int = EXIT_USAGE) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _last_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__


def _config_frame(e: BaseException, argv: Sequence[str]) -> str | None:
    """`FILE:LINE (in FUNC)` of the innermost frame of `e` in a `--config` file of `argv`, if any."""
    paths = set()
    for i, a in enumerate(argv):
        value = (
            argv[i + 1]
            if a == "--config" and i + 1 < len(argv)
            else a[9:]
            if a.startswith("--config=")
            else ""
        )
        if value:
            paths.add(os.path.realpath(value.partition(":")[0]))
    frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.realpath(f.filename) in paths]
    return (
        f"--config {os.path.relpath(frames[-1].filename)}:{frames[-1].lineno} (in {frames[-1].name})"
        if frames
        else None
    )


def _check_config_flags() -> None:
    """A config file that could not be loaded (missing, unreadable) is only reported when its value is
    read (ml_collections keeps the error): report it now, naming the flag."""
    for name in flags.FLAGS:
        value = flags.FLAGS[name].value
        if type(value).__name__ == "_ErrorConfig":
            fail(f"--{name}: {_last_line(value._error)}")


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        # A config file that raises is reported with its traceback embedded: keep the first and last lines.
        lines = [line for line in str(e).splitlines() if line.strip()]
        message = f"{lines[0]} {lines[-1].strip()}" if len(lines) > 1 else str(e)
        fail(re.sub(r"^flag --\S+?=.*?: (?=--)", "", message))  # validators below name the flag already
    except OSError as e:  # a `--config.a.b=v` override of a config file that failed to load
        fail(f"--config: {_last_line(e)}")
    except Exception as e:
        if where := _config_frame(e, argv):
            fail(f"{where}: {type(e).__name__}: {e}")
        if not isinstance(e, AttributeError | KeyError | TypeError | ValueError):
            raise
        # ml_collections raises these for `--config.a.b=v` overrides of keys the config does not have.
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        fail(f"the config has no key {e} (overrides given: {' '.join(overrides)})")
    _check_config_flags()
    return rest


def _directory_ok(name: str, must_exist: bool, value: str | list[str] | None) -> bool:
    for path in [value] if isinstance(value, str) else value or []:
        if os.path.exists(path) and not os.path.isdir(path):
            raise flags.ValidationError(f"--{name} {path} is a file, not a directory")
        if must_exist and not os.path.isdir(path):
            raise flags.ValidationError(f"--{name} {path}: no such directory")
        parent = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise flags.ValidationError(f"--{name} {path}: {parent} is a file, not a directory")
    return True


def directory_flags(*names: str, must_exist: bool = False) -> None:
    """Flags that name directories (to read with `must_exist`, else to create): a file in their place
    is a one-line error when the flags are parsed, before anything is imported or written."""
    for name in names:
        flags.register_validator(name, functools.partial(_directory_ok, name, must_exist))


def _quiet_unraisable(default: Callable) -> Callable:
    """TensorStore's callbacks into Orbax's closed event loop after a failed read print a traceback
    each (dozens, "Event loop is closed"), and pending writes more at shutdown; the failure itself is
    reported once, so drop these."""

    def hook(u) -> None:
        text = str(u.exc_value)
        if text == "Event loop is closed" or (
            sys.is_finalizing() and "Python is likely shutting down" in text
        ):
            return
        default(u)

    return hook


def run(main: Callable[..., None], *, positional: bool = False) -> None:
    """Runs `main()` (`main(args)` with `positional`) with parsed flags; bad input, a non-finite loss
    and a full disk are printed as one line with the exit codes of the module docstring."""

    def wrapped(argv: list[str]) -> None:
        if len(argv) > 1 and not positional:
            fail(f"unexpected arguments {argv[1:]}")
        metric_writer.setup_logging()
        sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
        try:
            with configlib.errors_as_config_errors():
                distributed.initialize(
                    _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, auto=_DISTRIBUTED.value
                )
            main(argv[1:]) if positional else main()
        except configlib.ConfigError as e:
            fail(e, EXIT_USAGE)
        except FloatingPointError as e:  # the NaN guard: the run stopped, its message says what is on disk
            fail(e, EXIT_NONFINITE)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            fail(e.strerror if e.filename is None else f"{e.filename}: {e.strerror}", EXIT_DISK_FULL)
        except KeyboardInterrupt as e:  # a third stop signal (preemption.py): abort, now
            print(f"error: interrupted{f' ({e})' if str(e) else ''}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)  # not sys.exit: the save threads left running would print at exit
        except Exception as e:
            if where := _config_frame(e, sys.argv):
                fail(f"{where}: {type(e).__name__}: {e}", EXIT_USAGE)
            raise

    app.run(wrapped, flags_parser=_parse_flags)
