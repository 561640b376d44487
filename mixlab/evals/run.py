"""Evaluates a checkpoint of a training workdir on whatever devices are present."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_collections

from mixlab import checkpoint, configlib, data, optim, sharding, train
from mixlab.evals import likelihood, suite
from mixlab.evals import loss as eval_loss
from mixlab.evals.generate import Generator
from mixlab.metric_writer import logger


def load_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except FileNotFoundError:
        raise configlib.ConfigError(f"{path} not found: is {workdir!r} a training workdir?") from None
    except json.JSONDecodeError as e:
        raise configlib.ConfigError(f"{path} is not valid JSON: {e}") from None
    except OSError as e:  # e.g. the workdir is a file
        raise configlib.ConfigError(f"{path}: {e.strerror}: is {workdir!r} a training workdir?") from None


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


@dataclasses.dataclass(frozen=True)
class Restored:
    """A checkpoint restored for evaluation: the parameters and what it takes to run them."""

    workdir: str
    step: int
    config: ml_collections.ConfigDict
    setup: train.Setup
    graphdef: Any
    params: Any
    mesh: Any


def checkpoint_steps(workdir: str) -> list[int]:
    mngr = checkpoint.manager(workdir)
    steps = sorted(mngr.all_steps())
    mngr.close()
    if not steps:
        raise configlib.ConfigError(f"no checkpoint under {workdir}/checkpoints")
    return steps


def restore(workdir: str, step: int | None = None, num_devices: int | None = None) -> Restored:
    """Restores step `step` (default: latest) onto a data-parallel mesh of the present devices (or the
    first `num_devices`)."""
    config = load_config(workdir)
    with configlib.errors_as_config_errors():
        reuse_tokenizer(config, workdir)
    setup = train.resolve(config, for_training=False)
    steps = checkpoint_steps(workdir)
    step = steps[-1] if step is None else step
    if step not in steps:
        raise configlib.ConfigError(f"--step {step}: no such checkpoint (have {steps})")
    mesh = sharding.make_mesh({"data": num_devices or -1})
    tx = optim.make_optimizer(config.train, setup.total_steps, setup.warmup_steps)
    graphdef, abstract, shardings, _ = train.init_state(setup, tx, mesh, config.seed)
    mngr = checkpoint.manager(workdir)
    try:
        with sharding.use_mesh(mesh):
            state, _ = checkpoint.restore(mngr, step, checkpoint.abstract_like(abstract, shardings))
    except checkpoint.UnreadableCheckpoint as e:  # training would move it aside; evaluation reports it
        raise configlib.ConfigError(f"{e}; evaluate another with --step (kept: {steps})") from None
    finally:
        mngr.close()
    logger.info("Restored %s/checkpoints/%d", workdir, step)
    return Restored(workdir, step, config, setup, graphdef, state["params"], mesh)


ANSWERS_STEPS = ("all", "final")


def answers_due(config, step: int, final_step: int) -> bool:
    """Whether `eval.answers` are scored at `step`: every evaluated checkpoint, or the final one only
    (`eval.answers_steps`; the study report reads only the final step's)."""
    every = config.eval.get("answers_steps", "all")
    if every not in ANSWERS_STEPS:
        raise configlib.ConfigError(
            f"eval.answers_steps = {every!r}: unknown (known: {', '.join(ANSWERS_STEPS)})"
        )
    return every == "all" or step == final_step


def evaluate_loss(r: Restored) -> tuple[str, dict]:
    """Held-out loss and bits-per-byte per domain into `workdir/eval/step_<step>.json`, and the answer
    likelihoods of the suites in `eval.answers` (if any) under its key "answers" (`likelihood.py`)."""
    config, setup = r.config, r.setup
    with configlib.errors_as_config_errors():  # a mixture-file domain without (enough) eval text: one line
        answer_suites = likelihood.parse_suites(config.eval.get("answers", ""))
        catalog = data.sources.catalog(config.data)
        held_out = [n for n in setup.mixture.names if catalog.has_split(n, "eval")]
        if skipped := [n for n in setup.mixture.names if n not in held_out]:
            logger.warning("no eval documents for %s (mixture file eval_fraction 0): not evaluated", skipped)
        for name in held_out:  # fewer than one batch of windows is an error naming the domain
            data.eval_batches(config.data, name, batch_size=config.eval.batch_size, num_batches=1)
    domains = data.Mixture(tuple(held_out), tuple(setup.mixture.as_dict()[n] for n in held_out))
    results = eval_loss.evaluate(r.graphdef, r.params, config, domains, setup.tokenizer, r.mesh)
    answers = None
    if answer_suites and not answers_due(config, r.step, setup.total_steps):
        logger.info("answer likelihoods: final step only (eval.answers_steps = 'final'), not step %d", r.step)
    elif answer_suites:
        model = (r.graphdef, r.params, setup.tokenizer, r.mesh)
        per_cell = config.eval.get("answers_per_cell")
        answers = likelihood.evaluate(*model, suites=answer_suites, seq_len=setup.seq_len, per_cell=per_cell)
    return eval_loss.write(r.workdir, r.step, results, answers), results


def evaluate_tasks(
    r: Restored, tasks: list, *, num_samples: int = 1, temperature: float = 0.0
) -> tuple[str, dict]:
    """Generation tasks (math, code, task files) scored into `workdir/eval/tasks_step_<step>.json`."""
    generate_fn = Generator(
        r.graphdef, r.params, r.setup.tokenizer, r.mesh, batch_size=r.config.eval.batch_size
    )
    results = suite.evaluate(
        tasks, generate_fn, num_samples=num_samples, temperature=temperature, seed=r.step
    )
    return suite.write(r.workdir, r.step, results), results


def evaluate_checkpoint(
    workdir: str, step: int | None = None, num_devices: int | None = None
) -> tuple[str, dict]:
    """Restores a checkpoint and writes its per-domain loss evaluation; returns (path, results)."""
    return evaluate_loss(restore(workdir, step, num_devices))
