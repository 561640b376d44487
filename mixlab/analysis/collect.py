"""Collecting a routing trace: restore a checkpoint onto the present devices and route a fixed sample.

The sample: for every domain, whole eval windows (`data.eval_batches`, seq_len of the run) drawn
without replacement by a generator seeded with (seed, crc32(domain name)), kept in corpus order and
cut to `tokens_per_domain` tokens (padding dropped). It depends only on the seed, the domain and
seq_len, so every checkpoint of a run, and every arm with the same seq_len, routes the same tokens
(what saturation and cross-arm comparisons need). Each sequence is routed with its full context.

Beside the trace, the same forward gives the per-domain loss on the sampled tokens and, for every r in
`mask_top`, the expert-redundancy test ΔL(r) (`masking.py`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import zlib
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx

from mixlab import checkpoint, configlib, data, losses, optim, sharding, train
from mixlab.analysis import masking
from mixlab.analysis.trace import Trace
from mixlab.evals import run as eval_run
from mixlab.metric_writer import logger

MAX_WINDOWS = 100_000  # eval windows read per domain before sampling (the built-in splits have < 2,000)


def checkpoint_steps(workdir: str) -> list[int]:
    """Saved steps of a workdir, without creating anything in it."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    mngr = checkpoint.manager(workdir)
    steps = sorted(mngr.all_steps())
    mngr.close()
    return steps


def check_moe(workdir: str) -> train.Setup:
    """The resolved setup of a workdir; a dense model is an error (it has no routing to trace)."""
    setup = train.resolve(eval_run.load_config(workdir), for_training=False)
    if not setup.model.is_moe:
        raise configlib.ConfigError(f"{workdir}: dense model (model.num_experts = 0): no routing to analyse")
    return setup


def sample_domain(data_cfg, domain: str, tokens: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded whole windows of `domain`'s eval split holding at least `tokens` real tokens (or all)."""
    return _sample(data_cfg.to_json_best_effort(sort_keys=True), domain, tokens, seed)


@functools.lru_cache(maxsize=32)  # every checkpoint of a series reads the same sample
def _sample(data_json: str, domain: str, tokens: int, seed: int) -> dict[str, np.ndarray]:
    data_cfg = ml_collections.ConfigDict(json.loads(data_json))
    batches = data.eval_batches(data_cfg, domain, batch_size=1, num_batches=MAX_WINDOWS)
    windows = {k: np.concatenate([b[k] for b in batches]) for k in ("inputs", "targets", "loss_mask")}
    seq_len = windows["inputs"].shape[1]
    need = min(len(batches), math.ceil(tokens / seq_len) + 1)  # + 1: the split's last window is padded
    rng = np.random.default_rng([seed, zlib.crc32(domain.encode())])
    rows = np.sort(rng.permutation(len(batches))[:need])
    return {k: v[rows] for k, v in windows.items()}


def restore_params(workdir: str, step: int, setup: train.Setup, mesh):
    """(graphdef, params) of `step`, restored onto `mesh` (the pattern of `evals.run`)."""
    config = eval_run.load_config(workdir)
    mngr = checkpoint.manager(workdir)
    tx = optim.make_optimizer(config.train, setup.total_steps, setup.warmup_steps)
    graphdef, abstract, shardings, _ = train.init_state(setup, tx, mesh, config.seed)
    with sharding.use_mesh(mesh):
        state, _ = checkpoint.restore(mngr, step, checkpoint.abstract_like(abstract, shardings))
    mngr.close()
    logger.info("Restored %s/checkpoints/%d", workdir, step)
    return graphdef, state["params"]


@functools.lru_cache(maxsize=8)  # one compilation for every checkpoint (and arm) of the same model
def make_step(graphdef, mask_top: tuple[int, ...]):
    """Jitted: routing of the model's own forward, its per-token nll, and nll with top-r masked.
    Shardings follow the arguments (params as restored, batches as placed)."""

    def step(params, inputs_BL, targets_BL):
        model = nnx.merge(graphdef, params)
        logits_BLV, aux = model(inputs_BL)
        out = {
            "experts": aux["moe"]["experts_BLK"],
            "gates": aux["moe"]["gates_BLK"],
            "nll": losses.token_nll(logits_BLV, targets_BL),
        }
        if mask_top:
            for r in (0, *mask_top):
                out[f"nll_r{r}"] = losses.token_nll(masking.forward(model, inputs_BL, r)[0], targets_BL)
        return out

    return jax.jit(step)


def route_rows(step_fn, params, inputs_SL, targets_SL, rows: int, batch_sharding) -> dict[str, np.ndarray]:
    """`step_fn` over S sequences in calls of `rows` (the last call padded by repeating its last row);
    outputs flattened to tokens t = s * L + position: experts/gates [n, S*L, K], nll* [S*L]."""
    S, L = inputs_SL.shape
    outs = []
    for start in range(0, S, rows):
        idx = np.minimum(np.arange(start, start + rows), S - 1)
        batch = [jax.device_put(a[idx], batch_sharding) for a in (inputs_SL, targets_SL)]
        got = jax.device_get(step_fn(params, *batch))
        n = min(rows, S - start)
        outs.append({k: v[:, :n] if k in ("experts", "gates") else v[:n] for k, v in got.items()})
    out = {}
    for k in outs[0]:
        if k in ("experts", "gates"):
            v = np.concatenate([o[k] for o in outs], axis=1)
            out[k] = v.reshape(v.shape[0], S * L, v.shape[-1])
        else:
            out[k] = np.concatenate([o[k] for o in outs]).reshape(S * L)
    return out


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    x = x.astype(np.float64)
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")
    return float(x.mean()), se


def collect(
    workdir: str,
    step: int,
    *,
    tokens_per_domain: int = 16_384,
    seed: int = 0,
    mask_top: Sequence[int] = (1, 2),
    domains: Sequence[str] | None = None,
    num_devices: int | None = None,
    batch_size: int = 16,
) -> tuple[Trace, dict]:
    """Routes the sample of every domain through checkpoint `step` of `workdir`.

    Returns (trace, info); info holds per-domain `loss` (the model's own forward) and `redundancy`
    (`loss_r0` and ΔL(r) with paired standard errors) on the sampled tokens, and `nll_T`, the model's
    per-token nll aligned with the trace (arms compare losses token by token)."""
    setup = check_moe(workdir)
    config = eval_run.load_config(workdir)
    names = tuple(domains or data.DOMAINS)
    E, K = setup.model.num_experts, setup.model.top_k
    if any(r + K > E for r in mask_top):
        logger.warning("%s: ΔL(r) needs r + top_k <= %d experts; skipping r > %d", workdir, E, E - K)
    mask_top = tuple(r for r in mask_top if r + K <= E)
    mesh = sharding.make_mesh({"data": num_devices or -1})
    graphdef, params = restore_params(workdir, step, setup, mesh)
    batch_sharding = sharding.named(mesh, "act_batch", None)
    rows_per_call = math.ceil(batch_size / mesh.size) * mesh.size  # divisible by the data-parallel size
    cols = {k: [] for k in ("experts", "gates", "domain", "token", "position", "nll")}
    info = {"loss": {}, "redundancy": {}}
    with sharding.use_mesh(mesh):
        step_fn = make_step(graphdef, mask_top)
        for d, name in enumerate(names):
            sample = sample_domain(config.data, name, tokens_per_domain, seed)
            out = route_rows(
                step_fn, params, sample["inputs"], sample["targets"], rows_per_call, batch_sharding
            )
            keep = np.flatnonzero(sample["loss_mask"].ravel() > 0)[:tokens_per_domain]
            S, L = sample["inputs"].shape
            cols["experts"].append(out["experts"][:, keep])
            cols["gates"].append(out["gates"][:, keep])
            cols["domain"].append(np.full(len(keep), d, np.int32))
            cols["token"].append(sample["inputs"].ravel()[keep])
            cols["position"].append(np.tile(np.arange(L), S)[keep])
            cols["nll"].append(out["nll"][keep])
            loss, se = _mean_se(cols["nll"][-1])
            info["loss"][name] = {"loss": loss, "loss_se": se, "tokens": len(keep)}
            if mask_top:
                base = out["nll_r0"][keep]
                red = {"loss_r0": float(base.mean()), "delta_loss": {}, "delta_loss_se": {}}
                for r in mask_top:
                    m, s = _mean_se(out[f"nll_r{r}"][keep] - base)
                    red["delta_loss"][str(r)], red["delta_loss_se"][str(r)] = m, s
                info["redundancy"][name] = red
            if len(keep) < tokens_per_domain:
                logger.warning("%s: eval split of %r has only %d tokens", workdir, name, len(keep))
    trace = Trace.build(
        np.concatenate(cols["experts"], axis=1),
        np.concatenate(cols["gates"], axis=1),
        np.concatenate(cols["domain"]),
        np.concatenate(cols["token"]),
        np.concatenate(cols["position"]),
        names,
        E,
    )
    info["nll_T"] = np.concatenate(cols["nll"]).astype(np.float32)
    return trace, info


def describe(setup: train.Setup) -> dict:
    """What the analysis needs to know about a run's model and mixture."""
    return {
        "num_experts": setup.model.num_experts,
        "top_k": setup.model.top_k,
        "moe_layers": list(setup.model.moe_layers),
        "mixture": setup.mixture.as_dict(),
    }
