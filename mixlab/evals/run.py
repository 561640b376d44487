"""Evaluates a checkpoint of a training workdir on whatever devices are present."""

from __future__ import annotations

import json
import os

import ml_collections

from mixlab import checkpoint, configlib, optim, sharding, train
from mixlab.evals import loss as eval_loss
from mixlab.metrics import logger


def load_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except FileNotFoundError:
        raise configlib.ConfigError(f"{path} not found: is {workdir!r} a training workdir?") from None
    except json.JSONDecodeError as e:
        raise configlib.ConfigError(f"{path} is not valid JSON: {e}") from None


def evaluate_checkpoint(
    workdir: str, step: int | None = None, num_devices: int | None = None
) -> tuple[str, dict]:
    """Restores step `step` (default: latest) onto a data-parallel mesh of the present devices (or the
    first `num_devices`) and writes `workdir/eval/step_<step>.json`; returns (path, results)."""
    config = load_config(workdir)
    setup = train.resolve(config)
    mngr = checkpoint.manager(workdir)
    steps = mngr.all_steps()
    if not steps:
        raise configlib.ConfigError(f"no checkpoint under {workdir}/checkpoints")
    step = max(steps) if step is None else step
    if step not in steps:
        raise configlib.ConfigError(f"--step {step}: no such checkpoint (have {sorted(steps)})")
    mesh = sharding.make_mesh({"data": num_devices or -1})
    tx = optim.make_optimizer(config.train, setup.total_steps, setup.warmup_steps)
    graphdef, abstract, shardings, _ = train.init_state(setup, tx, mesh, config.seed)
    with sharding.use_mesh(mesh):
        state, _ = checkpoint.restore(mngr, step, checkpoint.abstract_like(abstract, shardings))
    mngr.close()
    logger.info("Restored %s/checkpoints/%d", workdir, step)
    results = eval_loss.evaluate(graphdef, state["params"], config, setup.mixture, setup.tokenizer, mesh)
    return eval_loss.write(workdir, step, results), results
