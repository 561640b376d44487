"""Orbax checkpoints: train state (params, optimizer, step) and the Grain iterator in one step.

Layout: `WORKDIR/checkpoints/<step>/{state,data}`; `<step>` counts completed training steps and the data
iterator saved with it has consumed exactly that many batches, so a restore continues the same stream.

A step that fails to restore is one of two things, told apart by looking at its files (`unreadable`):
- unreadable (`UnreadableCheckpoint`): a metadata file missing or not JSON, or a read of the step's own
  array files failing in TensorStore (truncated, missing, garbled). `restore_latest` moves such a step
  to `checkpoints_unreadable/` and tries the one before.
- whole but not this run's (`CheckpointMismatch`): other shapes, another data stream, another process
  count. Refused with one line; nothing is moved. Any other error is raised as it is (a bug).
A full disk is an `OSError(ENOSPC)` whose one-line message names the directory and the space.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from mixlab import configlib
from mixlab.metric_writer import logger


class UnreadableCheckpoint(configlib.ConfigError):
    """A step whose own files cannot be read (see the module docstring)."""


class CheckpointMismatch(configlib.ConfigError):
    """A step whose files are whole but do not fit the run restoring it."""


def manager(workdir: str, *, keep: int = 3, keep_every: int = 0) -> ocp.CheckpointManager:
    """Keeps the last `keep` steps, plus every `keep_every`-th step when > 0 (the series that router
    saturation analysis reads). The trainer decides when to save (`save(..., force=True)`)."""
    policies = [checkpoint_managers.LatestN(n=keep)]
    if keep_every:
        policies.append(checkpoint_managers.EveryNSteps(interval_steps=keep_every))
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if os.path.exists(directory) and not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
        raise configlib.ConfigError(f"checkpoint directory {directory} is not readable and writable")
    options = ocp.CheckpointManagerOptions(
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
        enable_async_checkpointing=True,
        create=True,
    )
    return ocp.CheckpointManager(directory, options=options)


# --- saving: free space first, a full disk as one line ---------------------------------------------

_NO_SPACE = ("No space left on device", "Disk quota exceeded", "os_error_code='28'", "os_error_code='122'")


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    while e is not None:
        yield e
        e = e.__cause__ or e.__context__


def _disk_full(e: BaseException) -> bool:
    return any(
        (isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT))
        or any(s in str(x) for s in _NO_SPACE)
        for x in _chain(e)
    )


class _QuietDiskFull(logging.Filter):
    """Orbax logs a failed async write with a traceback per thread (~450 lines); the trainer reports a
    full disk in one line instead, so drop those records (and only those)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        return not any(s in text for s in _NO_SPACE)


for _name in ("absl", "asyncio"):  # asyncio: the failed writes' futures, collected at exit
    logging.getLogger(_name).addFilter(_QuietDiskFull())


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(path) for f in files)


def _committed(mngr: ocp.CheckpointManager) -> list[int]:
    return sorted(s for s in mngr.all_steps() if os.path.isdir(os.path.join(str(mngr.directory), str(s))))


@contextlib.contextmanager
def _disk_full_as_one_line(mngr: ocp.CheckpointManager, step: int) -> Iterator[None]:
    try:
        yield
    except Exception as e:
        if not _disk_full(e):
            raise
        directory = str(mngr.directory)
        partial = glob.glob(os.path.join(directory, "*.orbax-checkpoint-tmp*"))
        failed = [int(m.group(1)) for p in partial if (m := re.match(r"(\d+)\.", os.path.basename(p)))]
        if jax.process_index() == 0:  # the partial step is useless; its space lets the next start save
            for p in partial:
                shutil.rmtree(p, ignore_errors=True)
        steps = _committed(mngr)
        need = (
            f", the last checkpoint took {_mib(_dir_size(os.path.join(directory, str(steps[-1]))))}"
            if steps
            else ""
        )
        step = failed[0] if failed else step
        raise OSError(
            errno.ENOSPC,
            f"no space left on device saving checkpoint step {step} under {directory} "
            f"({_mib(shutil.disk_usage(directory).free)} free{need}); checkpoints {steps} are intact",
        ) from None


def _check_free_space(mngr: ocp.CheckpointManager, step: int) -> None:
    """Refuses to start a save that the last checkpoint's size says will not fit (old steps are deleted
    only after the new one is committed, so the new one needs its full size)."""
    directory, steps = str(mngr.directory), _committed(mngr)
    need = _dir_size(os.path.join(directory, str(steps[-1]))) if steps else 0
    free = shutil.disk_usage(directory).free
    short = int(free < need)
    if jax.process_count() > 1:  # every process must skip the (collective) save, or none
        short = int(np.max(multihost_utils.process_allgather(np.int32(short))))
    if short:
        raise OSError(
            errno.ENOSPC,
            f"not enough space to save checkpoint step {step} under {directory}: {_mib(free)} free, the "
            f"last checkpoint (step {steps[-1]}) took {_mib(need)}; free space or lower checkpoint.keep "
            f"(checkpoints {steps} are intact)",
        )


def wait(mngr: ocp.CheckpointManager) -> None:
    """Blocks until the saves started are committed; a full disk is a one-line OSError(ENOSPC)."""
    with _disk_full_as_one_line(mngr, mngr.latest_step() or 0):
        mngr.wait_until_finished()


def save(mngr: ocp.CheckpointManager, step: int, state: Any, data_iter=None) -> bool:
    """Starts an asynchronous save; the data iterator's state is taken now, so it may advance at once."""
    wait(mngr)  # Orbax waits for the previous save here anyway; its size is the estimate below
    _check_free_space(mngr, step)
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    with _disk_full_as_one_line(mngr, step):
        return mngr.save(step, args=ocp.args.Composite(**items), force=True)


def on_disk(mngr: ocp.CheckpointManager) -> str:
    """What a rerun would resume from, in words (for messages of a stopped run)."""
    steps = _committed(mngr)
    if not steps:
        return f"no checkpoint is on disk ({mngr.directory} is empty): a rerun starts from step 0"
    return f"checkpoints on disk: steps {steps} under {mngr.directory}: a rerun resumes from step {steps[-1]}"


# --- restoring: unreadable (moved aside) vs mismatch (refused) ---------------------------------------

# TensorStore failing to read stored bytes (truncated, missing or garbled chunks), as Orbax re-raises it.
_READ_ERROR = re.compile(
    r"\b(DATA_LOSS|OUT_OF_RANGE|FAILED_PRECONDITION|NOT_FOUND|UNKNOWN|INTERNAL): .*Error reading"
)


def _first_line(e: BaseException, limit: int = 240) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:limit]}"


def unreadable(step_dir: str, error: BaseException, items: tuple[str, ...] = ("state", "data")) -> str | None:
    """Why the checkpoint in `step_dir` cannot be read, judged from its files and how reading them
    failed; None when the files look whole (the failure is then a mismatch or a bug)."""
    json_files = []
    if "state" in items:
        if not os.path.isdir(os.path.join(step_dir, "state")):
            return "its state/ directory is missing"
        found = glob.glob(os.path.join(step_dir, "state", "array_metadatas", "process_*"))
        json_files += [os.path.join("state", "_METADATA")] + [os.path.relpath(p, step_dir) for p in found]
    if "data" in items:
        found = glob.glob(os.path.join(step_dir, "data", "process_*-of-*.json"))
        counts = {re.search(r"-of-(\d+)\.json$", p).group(1) for p in found}
        if not found or not any(
            all(
                os.path.exists(os.path.join(step_dir, "data", f"process_{i}-of-{n}.json"))
                for i in range(int(n))
            )
            for n in counts
        ):
            return "its data iterator files (data/process_*-of-*.json) are missing"
        json_files += [os.path.relpath(p, step_dir) for p in found]
    for rel in json_files:
        try:
            with open(os.path.join(step_dir, rel)) as f:
                json.load(f)
        except FileNotFoundError:
            return f"{rel} is missing"
        except (OSError, ValueError) as e:
            return f"{rel} is not readable JSON ({e})"
    own = os.path.abspath(step_dir).rstrip("/") + "/"
    for x in _chain(error):
        if isinstance(x, OSError) and x.filename and os.path.abspath(str(x.filename)).startswith(own):
            return f"{os.path.relpath(str(x.filename), step_dir)}: {x.strerror}"
        if _READ_ERROR.search(str(x)) and own in str(x):
            return _first_line(x)
    return None


def abstract_like(abstract_tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying the shardings to restore onto (any mesh, any device count)."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_tree, shardings
    )


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state: Any, data_iter=None) -> tuple[Any, Any]:
    """Restores `state` onto the shardings in `abstract_state`, and the data iterator if given.

    Raises `UnreadableCheckpoint` or `CheckpointMismatch` (one line each, see the module docstring)."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    error, reason = None, None
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:
        error, reason = e, unreadable(os.path.join(str(mngr.directory), str(step)), e, tuple(items))
    verdict = 0 if error is None else 1 if reason else 2
    if jax.process_count() > 1:  # one process failing alone would leave the others in the next collective
        verdict = int(np.max(multihost_utils.process_allgather(np.int32(verdict))))
    where = f"checkpoint step {step} in {mngr.directory}"
    if verdict == 1:
        raise UnreadableCheckpoint(f"{where} is unreadable: {reason or 'on another process'}") from error
    if verdict == 2:
        if error is not None and not isinstance(error, ValueError | KeyError | TypeError):
            raise error
        raise CheckpointMismatch(
            f"{where} does not fit this run ({_first_line(error) if error else 'on another process'}); it "
            "was left in place: resume with the config and data it was saved with, or use a new --workdir"
        ) from error
    return restored["state"], (restored["data"] if data_iter is not None else None)


def restore_latest(
    mngr: ocp.CheckpointManager, abstract_state: Any, make_data_iter: Callable[[], Any] | None = None
) -> tuple[int, Any, Any]:
    """Restores the newest readable step. An unreadable step is moved aside to `checkpoints_unreadable/`
    (kept for inspection, and so the resumed run can save that step again) with a warning naming it;
    a step that does not fit the run raises `CheckpointMismatch` and nothing is moved.
    Returns (step, state, data iterator), or (0, None, None)."""
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            state, data_iter = restore(
                mngr, step, abstract_state, make_data_iter() if make_data_iter else None
            )
            return step, state, data_iter
        except UnreadableCheckpoint as e:
            aside = _move_aside(mngr, step)
            logger.warning("%s; moved to %s, falling back to the previous step", e, aside)
    return 0, None, None


def _move_aside(mngr: ocp.CheckpointManager, step: int) -> str:
    src = os.path.join(str(mngr.directory), str(step))
    dst_dir = os.path.join(os.path.dirname(str(mngr.directory).rstrip("/")), "checkpoints_unreadable")
    dst = os.path.join(dst_dir, f"{step}-{int(time.time())}")
    if jax.process_index() == 0:
        os.makedirs(dst_dir, exist_ok=True)
        os.rename(src, dst)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"mixlab_move_aside_{step}")
    mngr.reload()
    return dst
