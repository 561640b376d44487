"""Held-out loss and bits-per-byte per domain, from the eval split of every domain in the mixture.

Bits per byte = total nats / (ln 2 * UTF-8 bytes of the targets): comparable across tokenizers.
Per-sequence nats, tokens and bytes are kept too (`seq_*`, the same sequences in every run of a
config): the items over which the capability table bootstraps its confidence intervals.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mixlab import data, losses, sharding


def make_eval_step(graphdef, param_shardings, batch_sharding):
    def step(params, batch):
        logits, _ = nnx.merge(graphdef, params)(batch["inputs"])
        nll_BL = losses.token_nll(logits, batch["targets"])
        return jnp.sum(nll_BL * batch["loss_mask"], axis=1), jnp.sum(batch["loss_mask"], axis=1)

    return jax.jit(step, in_shardings=(param_shardings, batch_sharding))


def evaluate(
    graphdef,
    params,
    config: ml_collections.ConfigDict,
    mixture: data.Mixture,
    tokenizer: data.Tokenizer,
    mesh,
) -> dict[str, dict[str, float]]:
    """`{domain: {"loss", "bpb", "tokens", "bytes", "seq_nats", "seq_tokens", "seq_bytes"}}` over
    `eval.num_batches` batches per domain."""
    batch_sharding = sharding.named(mesh, "act_batch", None)
    results = {}
    with sharding.use_mesh(mesh):
        step = make_eval_step(graphdef, nnx.get_named_sharding(params, mesh), batch_sharding)
        for name in mixture.names:
            seq_nats, seq_tokens, seq_bytes = [], [], []
            for batch in data.eval_batches(
                config.data, name, batch_size=config.eval.batch_size, num_batches=config.eval.num_batches
            ):
                dev = {k: jax.device_put(v, batch_sharding) for k, v in batch.items()}
                nats_B, tokens_B = jax.device_get(step(params, dev))
                seq_nats += [float(x) for x in nats_B]
                seq_tokens += [int(x) for x in tokens_B]
                mask = batch["loss_mask"] > 0
                seq_bytes += [
                    tokenizer.num_bytes(row[m]) for row, m in zip(batch["targets"], mask, strict=True)
                ]
            nats, tokens, nbytes = math.fsum(seq_nats), sum(seq_tokens), sum(seq_bytes)
            results[name] = {
                "loss": nats / tokens,
                "bpb": nats / (math.log(2) * max(nbytes, 1)),
                "tokens": int(tokens),
                "bytes": int(nbytes),
                "seq_nats": seq_nats,
                "seq_tokens": seq_tokens,
                "seq_bytes": seq_bytes,
            }
    return results


def write(workdir: str, step: int, results: dict[str, Any], answers: dict[str, Any] | None = None) -> str:
    """`workdir/eval/step_<step>.json`: {"step", "domains": results} and, when given, "answers" (the answer
    likelihoods of `likelihood.evaluate`); returns its path."""
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"step_{step}.json")
    out: dict[str, Any] = {"step": step, "domains": results}
    if answers is not None:
        out["answers"] = answers
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    return path
