"""Top-k routing, the auxiliary losses and routing telemetry; all router math in float32.

`route` follows these steps (each optional step off by default, so eval routing is deterministic):
  1. jitter (train): the router input is multiplied by U(1 - eps, 1 + eps) noise (Switch Transformer).
  2. learned logits z = x @ W_router.
  3. stochastic warmup (train, step t < t_w): routing logits = a * z + (1 - a) * g, a = t / t_w, with
     fresh g ~ N(0, 1) per token and expert; from t_w on they are z alone.
  4. scores: softmax over experts, or a sigmoid per expert (DeepSeek-V3).
  5. selection: top-k of scores + bias (aux-loss-free balancing; the bias changes which experts are
     chosen, never the gate values, and carries no gradient).
  6. gates: the chosen scores, renormalised to sum to 1 if `norm_topk_prob`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mixlab.models.config import ModelConfig


class Routing(NamedTuple):
    logits_BLE: jax.Array  # learned router logits (z-loss acts on these)
    route_logits_BLE: jax.Array  # the logits routing used (after the warmup mix)
    probs_BLE: jax.Array  # router probabilities, summing to 1 per token (softmax, or normalised sigmoid)
    gates_BLK: jax.Array  # weight of each chosen expert's output
    experts_BLK: jax.Array  # chosen expert ids, int32


def warmup_alpha(step: jax.Array, warmup_steps: int) -> jax.Array:
    """a = min(t / t_w, 1): the weight of the learned logits in stochastic routing warmup."""
    return jnp.minimum(jnp.asarray(step, jnp.float32) / warmup_steps, 1.0)


def route(
    x_BLD: jax.Array,
    w_router_DE: jax.Array,
    cfg: ModelConfig,
    *,
    bias_E: jax.Array | None = None,
    step: jax.Array | int | None = None,
    rng: jax.Array | None = None,
    train: bool = False,
) -> Routing:
    """Routes each token to cfg.top_k experts (module docstring: the numbered steps)."""
    x32_BLD = x_BLD.astype(jnp.float32)
    jitter = train and cfg.router_jitter > 0
    warmup = train and cfg.routing_warmup_steps > 0 and step is not None
    if (jitter or warmup) and rng is None:
        raise ValueError("router jitter and routing warmup need `rng` when train=True")
    if jitter:
        eps = cfg.router_jitter
        x32_BLD = x32_BLD * jax.random.uniform(
            jax.random.fold_in(rng, 0), x32_BLD.shape, jnp.float32, 1.0 - eps, 1.0 + eps
        )
    logits_BLE = jnp.einsum("bld,de->ble", x32_BLD, w_router_DE.astype(jnp.float32))
    route_logits_BLE = logits_BLE
    if warmup:
        alpha = warmup_alpha(step, cfg.routing_warmup_steps)
        noise_BLE = jax.random.normal(jax.random.fold_in(rng, 1), logits_BLE.shape, jnp.float32)
        route_logits_BLE = alpha * logits_BLE + (1.0 - alpha) * noise_BLE
    if cfg.score_fn == "softmax":
        scores_BLE = jax.nn.softmax(route_logits_BLE, axis=-1)
        probs_BLE = scores_BLE
    else:
        scores_BLE = jax.nn.sigmoid(route_logits_BLE)
        probs_BLE = scores_BLE / jnp.sum(scores_BLE, axis=-1, keepdims=True)
    if bias_E is None:
        gates_BLK, experts_BLK = jax.lax.top_k(scores_BLE, cfg.top_k)
    else:
        select_BLE = jax.lax.stop_gradient(scores_BLE + bias_E[None, None, :])
        _, experts_BLK = jax.lax.top_k(select_BLE, cfg.top_k)
        gates_BLK = jnp.take_along_axis(scores_BLE, experts_BLK, axis=-1)
    if cfg.norm_topk_prob:
        gates_BLK = gates_BLK / jnp.sum(gates_BLK, axis=-1, keepdims=True)
    return Routing(logits_BLE, route_logits_BLE, probs_BLE, gates_BLK, experts_BLK.astype(jnp.int32))


def lb_loss(probs_BLE: jax.Array, experts_BLK: jax.Array, granularity: str, num_shards: int = 1) -> jax.Array:
    """Switch load balancing E * sum_e f_e * P_e, averaged over token sets chosen by `granularity`.

    f_e is the share of the set's K assignments per token that the router gave expert e (before any
    capacity drop; sums to 1 over e) and P_e the set's mean router probability of e. Balanced routing
    gives 1. The token sets:
      sequence      each sequence on its own, then the mean over sequences (MaxText, DeepSeek-V3's
                    sequence-wise loss);
      micro_batch   the tokens of each data shard, i.e. what one device holds, then the mean over
                    shards (`num_shards`; Megatron/OLMoE's per-micro-batch loss);
      global_batch  all tokens of this call: under GSPMD the jitted batch is the global batch, so
                    this is the global-batch loss of "Demons in the Detail" (Qwen 2025).
    """
    B, L, E = probs_BLE.shape
    K = experts_BLK.shape[-1]
    chosen_BLE = jnp.sum(jax.nn.one_hot(experts_BLK, E, dtype=jnp.float32), axis=-2)
    if granularity == "sequence":
        n = B
    elif granularity == "micro_batch":
        if B % num_shards:
            raise ValueError(f"micro_batch load balancing: batch {B} not divisible by {num_shards} shards")
        n = num_shards
    elif granularity == "global_batch":
        n = 1
    else:
        raise ValueError(f"model.lb_granularity = {granularity!r}: unknown")
    f_nE = jnp.sum(chosen_BLE.reshape(n, -1, E), axis=1) / (K * (B // n) * L)
    p_nE = jnp.mean(probs_BLE.reshape(n, -1, E), axis=1)
    return E * jnp.mean(jnp.sum(f_nE * p_nE, axis=-1))


def aux_losses(
    routing: Routing, kept_BLK: jax.Array, granularity: str, num_shards: int = 1
) -> dict[str, jax.Array]:
    """Load balancing, router z-loss mean(logsumexp(z)^2) and telemetry: `load_E` (share of the
    assignments per expert, before drops, over the whole batch), `drop_frac` (dropped / assigned),
    `router_entropy` (mean over tokens of the entropy of the router probabilities, nats)."""
    probs_BLE, experts_BLK = routing.probs_BLE, routing.experts_BLK
    E = probs_BLE.shape[-1]
    entropy_BL = -jnp.sum(probs_BLE * jnp.log(jnp.maximum(probs_BLE, 1e-30)), axis=-1)
    return {
        "lb_loss": lb_loss(probs_BLE, experts_BLK, granularity, num_shards),
        "z_loss": jnp.mean(jax.nn.logsumexp(routing.logits_BLE, axis=-1) ** 2),
        "load_E": jnp.mean(jax.nn.one_hot(experts_BLK, E, dtype=jnp.float32), axis=(0, 1, 2)),
        "drop_frac": jnp.mean(jnp.logical_not(kept_BLK).astype(jnp.float32)),
        "router_entropy": jnp.mean(entropy_BL),
    }


def bias_update(bias_E: jax.Array, load_E: jax.Array, rate: float) -> jax.Array:
    """DeepSeek-V3's aux-loss-free step: bias += rate * sign(mean load - load), so an overloaded
    expert's bias falls (it is chosen less) and an underloaded one's rises."""
    return bias_E + rate * jnp.sign(jnp.mean(load_E) - load_E)
