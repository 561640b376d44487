"""Mixture-of-experts feed-forward layer with top-k routing and capacity (GShard einsum) dispatch.

The layer is a composition of small pure functions, each tested against a naive per-token loop:
  1. `route`: router logits in float32 -> softmax probabilities -> top-k experts and gates.
  2. `capacity_dispatch`: each group of S tokens gives every expert C slots; assignments take slots in
     priority order (all first choices of the group before any second choice, then token order); an
     assignment that finds its expert full is dropped (its token keeps the residual stream only).
  3. `expert_ffn`: one SwiGLU per expert over its [G, C] slots (a batched einsum).
  4. combine: the expert outputs are gathered back to tokens, weighted by the gates.
  5. `aux_losses`: Switch load balancing, router z-loss, and telemetry (load, drops, entropy).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from mixlab.models.config import ModelConfig
from mixlab.models.layers import dense_init
from mixlab.sharding import constrain


def route(
    x_GSD: jax.Array, w_router_DE: jax.Array, top_k: int, norm_topk: bool
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Returns (logits_GSE, probs_GSE, gates_GSK, experts_GSK); routing math in float32."""
    logits_GSE = jnp.einsum("gsd,de->gse", x_GSD.astype(jnp.float32), w_router_DE.astype(jnp.float32))
    probs_GSE = jax.nn.softmax(logits_GSE, axis=-1)
    gates_GSK, experts_GSK = jax.lax.top_k(probs_GSE, top_k)
    if norm_topk:
        gates_GSK = gates_GSK / jnp.sum(gates_GSK, axis=-1, keepdims=True)
    return logits_GSE, probs_GSE, gates_GSK, experts_GSK


def capacity(group_size: int, num_experts: int, top_k: int, capacity_factor: float) -> int:
    """Slots per expert per group; an expert never needs more than one slot per token."""
    return min(group_size, math.ceil(capacity_factor * group_size * top_k / num_experts))


def capacity_dispatch(
    experts_GSK: jax.Array, gates_GSK: jax.Array, num_experts: int, cap: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns (dispatch_GSEC 0/1, combine_GSEC gate weights, kept_GSK bool)."""
    G, S, K = experts_GSK.shape
    onehot_GSKE = jax.nn.one_hot(experts_GSK, num_experts, dtype=jnp.int32)
    # Priority: rank k of every token before rank k+1 of any token, then token order.
    onehot_GKSE = onehot_GSKE.transpose(0, 2, 1, 3).reshape(G, K * S, num_experts)
    position_GKSE = (jnp.cumsum(onehot_GKSE, axis=1) - 1) * onehot_GKSE
    position_GSK = position_GKSE.reshape(G, K, S, num_experts).sum(-1).transpose(0, 2, 1)
    kept_GSK = position_GSK < cap
    slot_GSKC = jax.nn.one_hot(position_GSK, cap, dtype=jnp.float32) * kept_GSK[..., None]
    dispatch_GSEC = jnp.einsum("gske,gskc->gsec", onehot_GSKE.astype(jnp.float32), slot_GSKC)
    combine_GSEC = jnp.einsum("gske,gskc,gsk->gsec", onehot_GSKE.astype(jnp.float32), slot_GSKC, gates_GSK)
    return dispatch_GSEC, combine_GSEC, kept_GSK


def expert_ffn(
    x_EGCD: jax.Array, w_gate_EDF: jax.Array, w_up_EDF: jax.Array, w_down_EFD: jax.Array
) -> jax.Array:
    gate_EGCF = jnp.einsum("egcd,edf->egcf", x_EGCD, w_gate_EDF)
    up_EGCF = jnp.einsum("egcd,edf->egcf", x_EGCD, w_up_EDF)
    return jnp.einsum("egcf,efd->egcd", jax.nn.silu(gate_EGCF) * up_EGCF, w_down_EFD)


def aux_losses(
    logits_GSE: jax.Array, probs_GSE: jax.Array, experts_GSK: jax.Array, kept_GSK: jax.Array
) -> dict[str, jax.Array]:
    """Switch load balancing E * sum_e f_e P_e (f_e: share of the T*K assignments chosen by the
    router, before capacity drops; P_e: mean router probability), z-loss mean(logsumexp(z)^2),
    and telemetry."""
    E = probs_GSE.shape[-1]
    load_E = jnp.mean(jax.nn.one_hot(experts_GSK, E, dtype=jnp.float32), axis=(0, 1, 2))
    prob_E = jnp.mean(probs_GSE, axis=(0, 1))
    entropy = -jnp.sum(probs_GSE * jnp.log(jnp.maximum(probs_GSE, 1e-30)), axis=-1)
    return {
        "lb_loss": E * jnp.sum(load_E * prob_E),
        "z_loss": jnp.mean(jax.nn.logsumexp(logits_GSE, axis=-1) ** 2),
        "load_E": load_E,
        "drop_frac": 1.0 - jnp.mean(kept_GSK.astype(jnp.float32)),
        "router_entropy": jnp.mean(entropy),
    }


class MoE(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        D, F, E = cfg.d_model, cfg.d_ff, cfg.num_experts
        out_scale = (2 * cfg.num_layers) ** -0.5
        self.w_router_DE = nnx.Param(
            dense_init(D)(rngs.params(), (D, E)), out_sharding=("embed", "router_exp")
        )
        self.w_gate_EDF = nnx.Param(
            dense_init(D)(rngs.params(), (E, D, F)), out_sharding=("exp", "embed", "mlp")
        )
        self.w_up_EDF = nnx.Param(
            dense_init(D)(rngs.params(), (E, D, F)), out_sharding=("exp", "embed", "mlp")
        )
        self.w_down_EFD = nnx.Param(
            dense_init(F, out_scale)(rngs.params(), (E, F, D)), out_sharding=("exp", "mlp", "embed")
        )

    def __call__(self, x_BLD: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        cfg, dt = self.cfg, x_BLD.dtype
        x_GSD = x_BLD  # one dispatch group per sequence
        logits_GSE, probs_GSE, gates_GSK, experts_GSK = route(
            x_GSD, self.w_router_DE[...], cfg.top_k, cfg.norm_topk_prob
        )
        cap = capacity(x_GSD.shape[1], cfg.num_experts, cfg.top_k, cfg.capacity_factor)
        dispatch_GSEC, combine_GSEC, kept_GSK = capacity_dispatch(
            experts_GSK, gates_GSK, cfg.num_experts, cap
        )
        x_EGCD = jnp.einsum("gsec,gsd->egcd", dispatch_GSEC.astype(dt), x_GSD)
        x_EGCD = constrain(x_EGCD, "act_exp", "act_batch_no_exp", None, "act_embed")
        y_EGCD = expert_ffn(
            x_EGCD,
            self.w_gate_EDF[...].astype(dt),
            self.w_up_EDF[...].astype(dt),
            self.w_down_EFD[...].astype(dt),
        )
        y_EGCD = constrain(y_EGCD, "act_exp", "act_batch_no_exp", None, "act_embed")
        y_GSD = jnp.einsum("gsec,egcd->gsd", combine_GSEC.astype(dt), y_EGCD)
        aux = aux_losses(logits_GSE, probs_GSE, experts_GSK, kept_GSK)
        aux["experts_BLK"] = experts_GSK
        aux["gates_BLK"] = gates_GSK
        return constrain(y_GSD, "act_batch", "act_len", "act_embed"), aux
