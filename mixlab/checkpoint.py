"""Orbax checkpoints: train state (params, optimizer, step) and the Grain iterator in one step.

Layout: `WORKDIR/checkpoints/<step>/{state,data}`; `<step>` counts completed training steps and the data
iterator saved with it has consumed exactly that many batches, so a restore continues the same stream.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from mixlab import configlib
from mixlab.metrics import logger


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


def save(mngr: ocp.CheckpointManager, step: int, state: Any, data_iter=None) -> bool:
    """Starts an asynchronous save; the data iterator's state is taken now, so it may advance at once."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    return mngr.save(step, args=ocp.args.Composite(**items), force=True)


def abstract_like(abstract_tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying the shardings to restore onto (any mesh, any device count)."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_tree, shardings
    )


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state: Any, data_iter=None) -> tuple[Any, Any]:
    """Restores `state` onto the shardings in `abstract_state`, and the data iterator if given."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
    return restored["state"], (restored["data"] if data_iter is not None else None)


def restore_latest(
    mngr: ocp.CheckpointManager, abstract_state: Any, make_data_iter: Callable[[], Any] | None = None
) -> tuple[int, Any, Any]:
    """Restores the newest readable step. A step that fails to restore (partly written, corrupted) is
    moved aside to `checkpoints_unreadable/` (kept for inspection, and so the resumed run can save that
    step again) with a warning naming it. Returns (step, state, data iterator), or (0, None, None)."""
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            data_iter = make_data_iter() if make_data_iter else None
            state, data_iter = restore(mngr, step, abstract_state, data_iter)
            return step, state, data_iter
        except Exception as e:  # any failure to read a step means: try the one before
            reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            aside = _move_aside(mngr, step)
            logger.warning(
                "checkpoint step %d in %s is unreadable (%s); moved to %s, falling back to the previous step",
                step,
                mngr.directory,
                reason,
                aside,
            )
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


# Config keys whose change makes a checkpoint unusable for resuming: the shapes of the state, or the data
# stream the saved iterator position refers to (change the mixture mid-run with a `data.schedule` stage).
SHAPE_KEYS = (
    "model",
    "data.seq_len",
    "train.batch_size",
    "data.weights",
    "data.arm",
    "data.mixture_file",
)


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Refuses to resume with a config that changes the model or the batch shape, naming the keys."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    new = json.loads(config.to_json_best_effort())
    changed = []
    for key in SHAPE_KEYS:
        a, b = _get(saved, key), _get(new, key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            changed.append(key)
    if changed:
        details = ", ".join(f"{k}: {_get(saved, k)!r} -> {_get(new, k)!r}" for k in changed)
        raise configlib.ConfigError(
            f"{workdir} holds checkpoints of another model or data stream ({details}); use a new --workdir "
            "(or a data.schedule stage to change the mixture mid-run)"
        )


def _get(tree: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree
