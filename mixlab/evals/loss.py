"""Held-out loss and bits-per-byte per domain, from the eval split of every domain in the mixture.

Bits per byte = total nats / (ln 2 * UTF-8 bytes of the targets): comparable across tokenizers.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mixlab import data, losses, sharding


def make_eval_step(graphdef, param_shardings, batch_sharding):
    def step(params, batch):
        logits, _ = nnx.merge(graphdef, params)(batch["inputs"])
        nll_BL = losses.token_nll(logits, batch["targets"])
        return jnp.sum(nll_BL * batch["loss_mask"]), jnp.sum(batch["loss_mask"])

    return jax.jit(step, in_shardings=(param_shardings, batch_sharding))


def evaluate(
    graphdef,
    params,
    config: ml_collections.ConfigDict,
    mixture: data.Mixture,
    tokenizer: data.Tokenizer,
    mesh,
) -> dict[str, dict[str, float]]:
    """`{domain: {"loss", "bpb", "tokens", "bytes"}}` over `eval.num_batches` batches per domain."""
    batch_sharding = sharding.named(mesh, "act_batch", None)
    results = {}
    with sharding.use_mesh(mesh):
        step = make_eval_step(graphdef, nnx.get_named_sharding(params, mesh), batch_sharding)
        for name in mixture.names:
            nats, tokens, nbytes = 0.0, 0.0, 0
            for batch in data.eval_batches(
                config.data, name, batch_size=config.eval.batch_size, num_batches=config.eval.num_batches
            ):
                dev = {k: jax.device_put(v, batch_sharding) for k, v in batch.items()}
                s, n = jax.device_get(step(params, dev))
                nats, tokens = nats + float(s), tokens + float(n)
                nbytes += tokenizer.num_bytes(batch["targets"][batch["loss_mask"] > 0])
            results[name] = {
                "loss": nats / tokens,
                "bpb": nats / (math.log(2) * max(nbytes, 1)),
                "tokens": int(tokens),
                "bytes": int(nbytes),
            }
    return results


def flatten(results: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"eval/{d}/{k}": v for d, r in results.items() for k, v in r.items()}


def write(workdir: str, step: int, results: dict[str, Any]) -> str:
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"step_{step}.json")
    with open(path, "w") as f:
        json.dump({"step": step, "domains": results}, f, indent=2)
    return path


def mean_loss(results: dict[str, dict[str, float]]) -> float:
    return float(np.mean([r["loss"] for r in results.values()]))
