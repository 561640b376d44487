"""Evaluates a checkpoint of a training workdir on whatever devices are present."""

from __future__ import annotations

import json
import os

import ml_collections

from mixlab import checkpoint, configlib, data, optim, sharding, train
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


def reuse_tokenizer(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Points `config.data.tokenizer` at the workdir's saved tokenizer, the one the model was trained with.

    The config's own tokenizer file may have moved (it is then not needed) or been retrained in place
    (then its ids mean other text: an error naming both)."""
    saved = data.tokenizer.load_workdir(workdir)
    if saved is None:  # a workdir from before tokenizer.json: bytes
        return
    spec = config.data.get("tokenizer", "bytes") or "bytes"
    if spec == "bytes" or (isinstance(spec, str) and os.path.exists(os.path.expanduser(spec[4:]))):
        data.tokenizer.check_same(
            saved,
            data.tokenizer.from_spec(spec),
            saved_what=f"workdir {workdir} ({data.tokenizer.WORKDIR_FILE})",
            wanted_what=f"its config (data.tokenizer = {spec!r})",
        )
    path = os.path.join(workdir, data.tokenizer.WORKDIR_FILE)
    config.data.tokenizer = "bytes" if saved.name == "bytes" else f"bpe:{path}"


def evaluate_checkpoint(
    workdir: str, step: int | None = None, num_devices: int | None = None
) -> tuple[str, dict]:
    """Restores step `step` (default: latest) onto a data-parallel mesh of the present devices (or the
    first `num_devices`) and writes `workdir/eval/step_<step>.json`; returns (path, results)."""
    config = load_config(workdir)
    with configlib.errors_as_config_errors():
        reuse_tokenizer(config, workdir)
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
    with configlib.errors_as_config_errors():  # a mixture-file domain without (enough) eval text: one line
        catalog = data.sources.catalog(config.data)
        held_out = [n for n in setup.mixture.names if catalog.has_split(n, "eval")]
        if skipped := [n for n in setup.mixture.names if n not in held_out]:
            logger.warning("no eval documents for %s (mixture file eval_fraction 0): not evaluated", skipped)
        for name in held_out:  # fewer than one batch of windows is an error naming the domain
            data.eval_batches(config.data, name, batch_size=config.eval.batch_size, num_batches=1)
    domains = data.Mixture(tuple(held_out), tuple(setup.mixture.as_dict()[n] for n in held_out))
    results = eval_loss.evaluate(graphdef, state["params"], config, domains, setup.tokenizer, mesh)
    return eval_loss.write(workdir, step, results), results
