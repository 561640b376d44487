"""Orbax checkpoints: train state (params, optimizer, step) and the Grain iterator in one step.

Layout: `WORKDIR/checkpoints/<step>/{state,data}`; `<step>` counts completed training steps and the data
iterator saved with it has consumed exactly that many batches, so a restore continues the same stream.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers


def manager(workdir: str, *, every_steps: int = 1, keep: int = 3, keep_every: int = 0):
    """Keeps the last `keep` steps, plus every `keep_every`-th step when > 0 (for saturation analysis)."""
    policies = [checkpoint_managers.LatestN(n=keep)]
    if keep_every:
        policies.append(checkpoint_managers.EveryNSteps(interval_steps=keep_every))
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=every_steps,
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
        enable_async_checkpointing=True,
        create=True,
    )
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, data_iter=None, force=False) -> bool:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    return mngr.save(step, args=ocp.args.Composite(**items), force=force)


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
