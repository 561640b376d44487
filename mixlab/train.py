"""The one training loop: config -> mesh -> sharded state -> jitted, donated step -> checkpoints.

`train(config, workdir)` runs or resumes a job. Everything the loop needs from the config is resolved and
validated up front by `resolve` (bad input fails before anything compiles).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from mixlab import checkpoint, configlib, data, losses, optim, sharding
from mixlab.metrics import MetricWriter, Progress, logger
from mixlab.models import ModelConfig, Transformer


@dataclasses.dataclass(frozen=True)
class Setup:
    """What the config means, resolved once."""

    model: ModelConfig
    mixture: data.Mixture
    tokenizer: data.ByteTokenizer
    total_steps: int
    warmup_steps: int
    batch_size: int
    seq_len: int

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


def resolve(config: ml_collections.ConfigDict) -> Setup:
    """Validates the config; every problem is a `ConfigError` naming the key and value."""
    with configlib.errors_as_config_errors():
        tokenizer = data.ByteTokenizer()
        model_fields = dict(config.model)
        if not model_fields.get("vocab_size"):
            model_fields["vocab_size"] = tokenizer.vocab_size
        model = ModelConfig.from_dict(model_fields)
        if model.vocab_size < tokenizer.vocab_size:
            raise ValueError(
                f"model.vocab_size = {model.vocab_size} < tokenizer vocab {tokenizer.vocab_size}"
            )
        mixture = data.resolve_mixture(dict(config.data.weights))
        seq_len, batch = int(config.data.seq_len), int(config.train.batch_size)
        total = configlib.to_steps(config.train.steps, total_steps=None, tokens_per_step=batch * seq_len)
        warmup = configlib.to_steps(config.train.warmup, total_steps=total, tokens_per_step=batch * seq_len)
        if total <= 0:
            raise ValueError(f"train.steps = {config.train.steps}: must give at least one step")
    return Setup(model, mixture, tokenizer, total, warmup, batch, seq_len)


def prepare_workdir(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise configlib.ConfigError(f"workdir {workdir!r} is not writable: {e.strerror}") from None


def init_state(setup: Setup, tx: optax.GradientTransformation, mesh, seed: int):
    """Returns (graphdef, abstract state, shardings, init fn); nothing is allocated until init fn runs.

    State is a dict: `params` (nnx.State), `opt_state` (optax), `step` (int32 scalar)."""

    def init():
        model = Transformer(setup.model, rngs=nnx.Rngs(params=seed))
        _, params = nnx.split(model)
        return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

    with sharding.use_mesh(mesh):
        graphdef = nnx.graphdef(nnx.eval_shape(lambda: Transformer(setup.model, rngs=nnx.Rngs(0))))
        abstract = jax.eval_shape(init)
        shardings = nnx.get_named_sharding(abstract, mesh)
    return graphdef, abstract, shardings, jax.jit(init, out_shardings=shardings)


def make_train_step(graphdef, tx, train_cfg: ml_collections.ConfigDict, setup: Setup):
    num_domains, model_cfg = len(setup.mixture.names), setup.model

    def loss_fn(params, batch):
        logits, aux = nnx.merge(graphdef, params)(batch["inputs"])
        nll_BL = losses.token_nll(logits, batch["targets"])
        mask_BL = batch["loss_mask"]
        ce = jnp.sum(nll_BL * mask_BL) / jnp.maximum(jnp.sum(mask_BL), 1.0)
        total = ce + train_cfg.lb_loss_coef * aux["lb_loss"] + train_cfg.z_loss_coef * aux["z_loss"]
        return total, (ce, nll_BL, aux)

    def step(state, batch):
        (total, (ce, nll_BL, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        dom_sum, dom_n = losses.sums_by_domain(nll_BL, batch["loss_mask"], batch["domain"], num_domains)
        metrics = {
            "train/loss": ce,
            "train/total_loss": total,
            "train/lb_loss": aux["lb_loss"],
            "train/z_loss": aux["z_loss"],
            "train/grad_norm": optax.global_norm(grads),
            "train/param_norm": optax.global_norm(params),
            "domain_loss_sum": dom_sum,
            "domain_tokens": dom_n,
        }
        if model_cfg.is_moe:
            moe = aux["moe"]
            metrics["moe/load_max"] = jnp.max(moe["load_E"], axis=-1) * model_cfg.num_experts
            metrics["moe/drop_frac"] = moe["drop_frac"]
            metrics["moe/router_entropy"] = moe["router_entropy"]
            metrics["routing_counts"] = losses.routing_counts(
                moe["experts_BLK"],
                batch["loss_mask"],
                batch["domain"],
                num_domains,
                model_cfg.num_experts,
            )
        new_state = {"params": params, "opt_state": opt_state, "step": state["step"] + 1}
        return new_state, metrics

    return step


def scalars(metrics: dict[str, np.ndarray], setup: Setup) -> dict[str, float]:
    """Flattens fetched step metrics into named scalars (`train/<domain>/loss`, `moe/layer_00/...`)."""
    out = {k: float(v) for k, v in metrics.items() if k.startswith("train/")}
    for i, name in enumerate(setup.mixture.names):
        if metrics["domain_tokens"][i] > 0:
            out[f"train/{name}/loss"] = float(metrics["domain_loss_sum"][i] / metrics["domain_tokens"][i])
    for key in ("moe/load_max", "moe/drop_frac", "moe/router_entropy"):
        for layer, value in enumerate(metrics.get(key, ())):
            out[f"moe/layer_{layer:02d}/{key.split('/')[1]}"] = float(value)
    return out


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (or resumes) the job described by `config` in `workdir`; returns the last metrics."""
    setup = resolve(config)
    prepare_workdir(workdir)
    with configlib.errors_as_config_errors():
        mesh = sharding.make_mesh(dict(config.mesh))
    batch_axes = np.prod([mesh.shape[a] for a in ("data", "fsdp", "expert")])
    if setup.batch_size % (batch_axes * jax.process_count()):
        raise configlib.ConfigError(
            f"train.batch_size = {setup.batch_size} is not divisible by the data-parallel size "
            f"{batch_axes} x {jax.process_count()} processes"
        )
    is_main = jax.process_index() == 0
    if is_main:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    tx = optim.make_optimizer(config.train, setup.total_steps, setup.warmup_steps)
    graphdef, abstract, shardings, init = init_state(setup, tx, mesh, config.seed)
    step_fn = jax.jit(
        make_train_step(graphdef, tx, config.train, setup),
        in_shardings=(shardings, sharding.named(mesh, "act_batch", None)),
        out_shardings=(shardings, None),
        donate_argnums=0,
    )
    data_iter = iter(
        data.make_train_dataset(
            config.data, batch_size=setup.batch_size // jax.process_count(), seed=config.seed
        )
    )
    mngr = checkpoint.manager(workdir, every_steps=config.checkpoint.every_steps, keep=config.checkpoint.keep)
    start = mngr.latest_step() or 0
    with sharding.use_mesh(mesh):
        if start:
            logger.info("Resuming from %s/checkpoints/%d", workdir, start)
            state, data_iter = checkpoint.restore(
                mngr, start, checkpoint.abstract_like(abstract, shardings), data_iter
            )
        else:
            state = init()
    counts = param_counts_line(setup)
    logger.info("%s | mesh %s | %d steps", counts, dict(mesh.shape), setup.total_steps)
    writer = MetricWriter(workdir, enabled=is_main)
    progress = Progress(setup.total_steps, setup.tokens_per_step, start)
    batch_sharding = sharding.named(mesh, "act_batch", None)
    routing_total = None
    pending = None  # (step, device metrics) of the previous step, fetched after the next dispatch
    last: dict[str, float] = {}

    schedule = optim.make_schedule(config.train, setup.total_steps, setup.warmup_steps)
    # Stopping early at halt_at_step keeps the schedule of the full run (staged jobs, resume tests).
    end = min(setup.total_steps, config.train.halt_at_step or setup.total_steps)

    def finish(step_done: int, metrics) -> None:
        nonlocal routing_total, last
        fetched = jax.device_get(metrics)
        if not np.isfinite(fetched["train/loss"]):
            raise FloatingPointError(
                f"loss is {fetched['train/loss']} at step {step_done} (last checkpoint: "
                f"{mngr.latest_step()}); lower train.lr or check the data"
            )
        if "routing_counts" in fetched:
            c = fetched["routing_counts"]
            routing_total = c if routing_total is None else routing_total + c
        if step_done % config.train.log_every == 0 or step_done == end:
            last = scalars(fetched, setup)
            perf = progress.update(step_done)
            writer.write(step_done, {**last, **perf, "train/lr": float(schedule(step_done))})
            if is_main:
                logger.info(progress.line(step_done, last["train/loss"], perf))

    with sharding.use_mesh(mesh):
        for step in range(start, end):
            batch = {
                k: jax.make_array_from_process_local_data(batch_sharding, v)
                for k, v in next(data_iter).items()
            }
            state, metrics = step_fn(state, batch)
            if pending is not None:
                finish(*pending)
            pending = (step + 1, metrics)
            if (step + 1) % config.checkpoint.every_steps == 0 or step + 1 == end:
                # Explicit interval: Orbax alone would also save a fresh run's first step.
                checkpoint.save(mngr, step + 1, state, data_iter, force=True)
        if pending is not None:
            finish(*pending)
        mngr.wait_until_finished()
    writer.close()
    if is_main and routing_total is not None:
        write_routing_counts(workdir, setup, routing_total, start)
    mngr.close()
    return last


def param_counts_line(setup: Setup) -> str:
    c = setup.model.param_counts()
    return f"params {c['total'] / 1e6:.2f}M total, {c['active'] / 1e6:.2f}M active per token"


def write_routing_counts(workdir: str, setup: Setup, counts: np.ndarray, since_step: int) -> None:
    """n[layer, domain, expert] accumulated over this run's steps, for routing analysis."""
    path = os.path.join(workdir, "routing_train_counts.json")
    with open(path, "w") as f:
        json.dump(
            {
                "since_step": since_step,
                "domains": list(setup.mixture.names),
                "counts_layer_domain_expert": counts.astype(np.int64).tolist(),
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            f,
        )
