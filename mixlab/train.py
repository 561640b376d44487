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

from mixlab import (
    checkpoint,
    configlib,
    data,
    losses,
    optim,
    preemption,
    run_identity,
    sharding,
    workdir_lock,
)
from mixlab.metric_writer import MetricWriter, Progress, logger, matmul_peak_flops
from mixlab.models import ModelConfig, Transformer, grouped_gemm


@dataclasses.dataclass(frozen=True)
class Setup:
    """What the config means, resolved once."""

    model: ModelConfig
    mixture: data.Mixture
    tokenizer: data.Tokenizer
    total_steps: int
    warmup_steps: int
    batch_size: int
    seq_len: int
    plan: data.DataPlan | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


def resolve(config: ml_collections.ConfigDict, *, for_training: bool = True) -> Setup:
    """Validates the config; every problem is a `ConfigError` naming the key and value.

    `for_training` also checks that the batch splits over this machine's devices, processes and
    micro-batches; evaluation and analysis, which restore a run onto whatever devices are present,
    pass False."""
    with configlib.errors_as_config_errors():
        # data.mixture_file / data.tokenizer: the domains (ids = the file's order) and the tokenizer.
        tokenizer = data.sources.catalog(config.data).tokenizer
        model_fields = dict(config.model)
        if not model_fields.get("vocab_size"):
            model_fields["vocab_size"] = tokenizer.vocab_size
        model = ModelConfig.from_dict(model_fields)
        if model.vocab_size < tokenizer.vocab_size:
            raise ValueError(
                f"model.vocab_size = {model.vocab_size} < tokenizer vocab {tokenizer.vocab_size}"
            )
        seq_len, batch = int(config.data.seq_len), int(config.train.batch_size)
        total = configlib.to_steps(config.train.steps, total_steps=None, tokens_per_step=batch * seq_len)
        if total <= 0:
            raise ValueError(f"train.steps = {config.train.steps}: must give at least one step")
        # Mixture, arm and schedule; a domain read more than data.max_epochs times is an error here.
        plan = data.resolve_plan(config.data, global_batch_size=batch)
        plan.check_repetition(total)
        total = plan.run_steps(total)  # fewer steps only for `remove:D:hold` arms (a smaller budget)
        warmup = configlib.to_steps(config.train.warmup, total_steps=total, tokens_per_step=batch * seq_len)
        if for_training:
            check_batch_split(config, batch)
    return Setup(model, plan.mixture, tokenizer, total, warmup, batch, seq_len, plan)


def check_batch_split(config: ml_collections.ConfigDict, batch: int) -> None:
    """The batch splits over processes, data-parallel devices (`data` x `fsdp` x `expert`, from
    `config.mesh` on the present devices) and `train.grad_accum_steps` micro-batches."""
    shape = sharding.mesh_shape(dict(config.mesh), jax.device_count(), allow_fewer=True)  # as make_mesh
    batch_axes = shape["data"] * shape["fsdp"] * shape["expert"]
    accum = int(config.train.get("grad_accum_steps", 1))
    if accum < 1 or batch % (accum * batch_axes):
        raise configlib.ConfigError(
            f"train.grad_accum_steps = {accum}: train.batch_size = {batch} must split into "
            f"{accum} micro-batches each divisible by the data-parallel size {batch_axes}"
        )
    if batch % (batch_axes * jax.process_count()):
        raise configlib.ConfigError(
            f"train.batch_size = {batch} is not divisible by the data-parallel size "
            f"{batch_axes} x {jax.process_count()} processes"
        )


def prepare_workdir(workdir: str) -> None:
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise configlib.ConfigError(f"workdir {workdir!r} is a file, not a directory")
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test.{os.getpid()}")  # two starts may race here
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


def make_train_step(graphdef, tx, train_cfg: ml_collections.ConfigDict, setup: Setup, seed: int = 0):
    """The jitted-to-be update: (state, batch) -> (state, stats); `seed` seeds the routing noise."""
    num_domains, model_cfg = len(setup.mixture.names), setup.model
    noise_key = jax.random.fold_in(jax.random.key(seed), 0x5EED)
    accum = int(train_cfg.get("grad_accum_steps", 1))

    def loss_fn(params, batch, step):
        # Routing noise (jitter, warmup): the run's seed, its own stream, folded with the step so a
        # resume repeats it.
        rng = jax.random.fold_in(noise_key, step) if model_cfg.needs_rng else None
        logits, aux = nnx.merge(graphdef, params)(batch["inputs"], step=step, rng=rng, train=True)
        nll_BL = losses.token_nll(logits, batch["targets"])
        mask_BL = batch["loss_mask"]
        ce = jnp.sum(nll_BL * mask_BL) / jnp.maximum(jnp.sum(mask_BL), 1.0)
        total = ce + train_cfg.lb_loss_coef * aux["lb_loss"] + train_cfg.z_loss_coef * aux["z_loss"]
        return total, (ce, nll_BL, aux)

    def micro_step(params, batch, step):
        """Gradients and summable statistics of one micro-batch."""
        (total, (ce, nll_BL, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, step)
        dom_sum, dom_n = losses.sums_by_domain(nll_BL, batch["loss_mask"], batch["domain"], num_domains)
        stats = {
            "train/loss": ce,
            "train/total_loss": total,
            "train/lb_loss": aux["lb_loss"],
            "train/z_loss": aux["z_loss"],
            "domain_loss_sum": dom_sum,
            "domain_tokens": dom_n,
        }
        if model_cfg.is_moe:
            moe = aux["moe"]
            stats |= {k: moe[k] for k in ("load_E", "drop_frac", "router_entropy")}
            stats["routing_counts"] = losses.routing_counts(
                moe["experts_BLK"], batch["loss_mask"], batch["domain"], num_domains, model_cfg.num_experts
            )
        return grads, stats

    def accumulated(params, batch, step):
        """Mean gradient over `accum` micro-batches (a scan: one micro-batch's activations live at a
        time). Micro-batch i takes rows i, i + accum, ... so that each spans every data shard."""
        if accum == 1:
            return micro_step(params, batch, step)
        micro = jax.tree.map(lambda x: x.reshape(-1, accum, *x.shape[1:]).swapaxes(0, 1), batch)

        def body(carry, mb):
            out = micro_step(params, mb, step)
            return jax.tree.map(jnp.add, carry, out), None

        zeros = jax.tree.map(
            jnp.zeros_like, jax.eval_shape(micro_step, params, jax.tree.map(lambda x: x[0], micro), step)
        )
        (grads, stats), _ = jax.lax.scan(body, zeros, micro)
        summed = ("domain_loss_sum", "domain_tokens", "routing_counts")
        stats = {k: v if k in summed else v / accum for k, v in stats.items()}
        return jax.tree.map(lambda g: g / accum, grads), stats

    def step(state, batch):
        grads, stats = accumulated(state["params"], batch, state["step"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        if model_cfg.router_bias_rate > 0:  # aux-loss-free balancing: outside the gradient
            model = nnx.merge(graphdef, params)
            model.update_router_bias(stats["load_E"])
            params = nnx.state(model)
        metrics = {k: v for k, v in stats.items() if k != "load_E"}
        metrics["train/grad_norm"] = optax.global_norm(grads)
        metrics["train/param_norm"] = optax.global_norm(params)
        if model_cfg.is_moe:
            metrics["moe/load_max"] = jnp.max(stats["load_E"], axis=-1) * model_cfg.num_experts
            metrics["moe/drop_frac"] = metrics.pop("drop_frac")
            metrics["moe/router_entropy"] = metrics.pop("router_entropy")
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


class StepMetrics:
    """Fetches a step's metrics (after the next step is dispatched, so the host never waits on the
    device), guards against NaN/Inf, accumulates routing counts, and logs every `log_every` steps."""

    def __init__(self, config, setup: Setup, workdir: str, start: int, end: int, is_main: bool):
        self.setup, self.end, self.is_main = setup, end, is_main
        self.log_every = config.train.log_every
        self.schedule = optim.make_schedule(config.train, setup.total_steps, setup.warmup_steps)
        self.flops_per_step = setup.model.flops_per_token(setup.seq_len) * setup.tokens_per_step
        self.writer = MetricWriter(workdir, enabled=is_main, resume_step=start)
        self.progress = Progress(setup.total_steps, setup.tokens_per_step, start)
        self.last_good = start  # last step known finite
        self.routing_counts: np.ndarray | None = None
        self.last: dict[str, float] = {}

    def __call__(self, step: int, metrics: dict[str, jax.Array]) -> None:
        fetched = jax.device_get(metrics)
        loss, grad_norm = fetched["train/loss"], fetched["train/grad_norm"]
        if not (np.isfinite(loss) and np.isfinite(grad_norm)):
            raise FloatingPointError(
                f"loss {loss} / grad norm {grad_norm} at step {step}: non-finite between step "
                f"{self.last_good} and {step} (lower train.lr or check the data)"
            )
        self.last_good = step
        if "routing_counts" in fetched:
            c = fetched["routing_counts"]
            self.routing_counts = c if self.routing_counts is None else self.routing_counts + c
        if step % self.log_every == 0 or step == self.end:
            self.last = scalars(fetched, self.setup)
            perf = self.progress.update(step)
            flops = perf["perf/steps_per_s"] * self.flops_per_step
            # MFU against a matmul peak measured at the first log line (~1 s, once per process).
            peak = matmul_peak_flops(self.setup.model.dtype) * jax.device_count()
            perf["perf/model_tflops_per_s"], perf["perf/mfu"] = flops / 1e12, flops / peak
            self.writer.write(step, {**self.last, **perf, "train/lr": float(self.schedule(step))})
            if self.is_main:
                logger.info(self.progress.line(step, self.last["train/loss"], perf))

    def close(self) -> None:
        self.writer.close()


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (or resumes) the job described by `config` in `workdir`; returns the last metrics.

    One trainer per workdir: a second one is refused (`workdir_lock`) before it writes anything."""
    setup = resolve(config)
    prepare_workdir(workdir)
    with workdir_lock.hold(workdir):
        return _train(config, workdir, setup)


def write_run_files(config, workdir: str, setup: Setup, mngr) -> None:
    """Checks that `workdir`'s checkpoints are of this run (`run_identity`), then writes config.json,
    tokenizer.json and, on a first start, the run's identity and data audit."""
    resuming = bool(mngr.all_steps())
    identity = run_identity.compute(config, setup.plan)
    if resuming:
        with configlib.errors_as_config_errors():  # ids of another tokenizer would mean other text
            data.tokenizer.check_workdir(workdir, setup.tokenizer)
        run_identity.check(workdir, identity, mngr.latest_step())
    if jax.process_index() != 0:
        return
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    with open(os.path.join(workdir, "tokenizer.json"), "w") as f:
        json.dump(setup.tokenizer.to_dict(), f)
    if not resuming or run_identity.load(workdir) is None:  # the latter: a workdir from before the file
        run_identity.write(workdir, identity)
    if not resuming:  # requested vs realised tokens per domain, beside the checkpoints
        data.audit.run(config, workdir, sequences=1000)


def _train(config: ml_collections.ConfigDict, workdir: str, setup: Setup) -> dict[str, Any]:
    with configlib.errors_as_config_errors():
        mesh = sharding.make_mesh(dict(config.mesh))
        sharding.check_experts_fit_mesh(setup.model.num_experts, mesh)  # experts divide over `expert`
        save_every = configlib.to_steps(
            config.checkpoint.every, total_steps=setup.total_steps, tokens_per_step=setup.tokens_per_step
        )
    mngr = checkpoint.manager(workdir, keep=config.checkpoint.keep, keep_every=config.checkpoint.keep_every)
    write_run_files(config, workdir, setup, mngr)
    is_main = jax.process_index() == 0
    tx = optim.make_optimizer(config.train, setup.total_steps, setup.warmup_steps)
    graphdef, abstract, shardings, init = init_state(setup, tx, mesh, config.seed)
    batch_sharding = sharding.named(mesh, "act_batch", None)
    step_fn = jax.jit(
        make_train_step(graphdef, tx, config.train, setup, seed=config.seed),
        in_shardings=(shardings, batch_sharding),
        out_shardings=(shardings, None),
        donate_argnums=0,
    )

    def make_data_iter():
        per_process = setup.batch_size // jax.process_count()
        return iter(data.make_train_dataset(config.data, batch_size=per_process, seed=config.seed))

    with sharding.use_mesh(mesh):
        abstract_state = checkpoint.abstract_like(abstract, shardings)
        start, state, data_iter = checkpoint.restore_latest(mngr, abstract_state, make_data_iter)
        if start:
            logger.info("Resuming from %s/checkpoints/%d", workdir, start)
        else:
            state, data_iter = init(), make_data_iter()
    # Stopping early at halt_at_step keeps the schedule of the full run (staged jobs, resume tests).
    end = min(setup.total_steps, config.train.halt_at_step or setup.total_steps)
    logger.info(
        "%s | mesh %s | dispatch %s | steps %d..%d of %d",
        param_counts_line(setup),
        dict(mesh.shape),
        grouped_gemm.describe(setup.model.dispatch) if setup.model.is_moe else "dense",
        start,
        end,
        setup.total_steps,
    )
    step_metrics = StepMetrics(config, setup, workdir, start, end, is_main)
    pending = None  # (step, device metrics), reported after the next step is dispatched
    # The signal handlers stay until every save is committed (see preemption.py).
    with sharding.use_mesh(mesh), preemption.StopRequest() as stop:
        try:
            for step in range(start, end):
                batch = next(data_iter)
                batch = {
                    k: jax.make_array_from_process_local_data(batch_sharding, v) for k, v in batch.items()
                }
                state, metrics = step_fn(state, batch)
                done = step + 1
                if pending is not None:
                    step_metrics(*pending)
                pending = (done, metrics)
                stopping = stop.should_stop(done)
                if done % save_every == 0 or done == end or stopping:
                    step_metrics(*pending)  # a checkpoint is only written for a finite state
                    pending = None
                    checkpoint.save(mngr, done, state, data_iter)
                if stopping:
                    checkpoint.wait(mngr)  # committed before the log says so
                    logger.info("%s: saved step %d; run the same command to resume", stop.signal_name, done)
                    break
            if pending is not None:
                step_metrics(*pending)
        except FloatingPointError as e:  # the NaN guard: say what a rerun would start from
            checkpoint.wait(mngr)
            raise FloatingPointError(f"{e}; {checkpoint.on_disk(mngr)}") from None
        finally:  # also on a NaN stop or a full disk: finish the saves started, keep what was logged
            try:
                checkpoint.wait(mngr)
            finally:
                step_metrics.close()
    if is_main and step_metrics.routing_counts is not None:
        write_routing_counts(workdir, setup, step_metrics.routing_counts, start)
    mngr.close()
    return step_metrics.last


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
