"""Mixture-of-experts feed-forward layer: top-k routed SwiGLU experts plus optional shared experts.

1. `routing.route`: float32 router -> scores -> top-k experts and gates (jitter, warmup, bias).
2. dispatch (`dispatch.py`): capacity (may drop assignments) or dropless; each runs the experts'
   SwiGLUs and combines their outputs weighted by the gates.
3. shared experts: a dense SwiGLU every token goes through, added to the routed output.
4. `routing.aux_losses`: load balancing, router z-loss, telemetry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixlab.models import dispatch as dispatch_lib
from mixlab.models import routing
from mixlab.models.config import ModelConfig
from mixlab.models.layers import Mlp, dense_init
from mixlab.sharding import constrain


class RouterBias(nnx.Variable):
    """Aux-loss-free balancing bias (DeepSeek-V3). Not an `nnx.Param`: it gets no gradient and is
    updated by `routing.bias_update` in the train step, outside the optimizer."""


def resolve_dispatch(dispatch: str) -> str:
    """`auto` -> the fast dropless path of the backend we are tracing for."""
    if dispatch != "auto":
        return dispatch
    return "dropless_blocked" if jax.default_backend() == "cpu" else "dropless_ragged"


def group_tokens(x_BLD: jax.Array, group_size: int) -> jax.Array:
    """[B, L, D] -> [G, S, D] capacity groups of `group_size` tokens (0: one group per sequence)."""
    B, L, D = x_BLD.shape
    S = group_size or L
    if (L % S and S % L) or (B * L) % S:
        raise ValueError(
            f"model.moe_group_size = {group_size}: must divide the sequence length {L} or be a "
            f"multiple of it that divides the batch's {B * L} tokens"
        )
    return x_BLD.reshape(B * L // S, S, D)


def blocked_rows(tokens: int, top_k: int, num_experts: int) -> int:
    """Rows per matmul of `dropless_blocked`: about a quarter of an expert's mean load, in [64, 512].
    Each expert wastes half a block on average: 8 x 128 of 8192 rows (12%) at 4096 tokens, top-2 of 8
    experts (capacity dispatch computes 25% extra at cf 1.25); blocks of 128 or 512 were no faster."""
    mean_load = tokens * top_k // num_experts
    return max(64, min(512, 1 << max(0, (mean_load // 4).bit_length() - 1)))


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
        if cfg.router_bias_rate > 0:
            self.router_bias_E = RouterBias(jnp.zeros((E,), jnp.float32), out_sharding=("router_exp",))
        self.shared = Mlp(cfg, cfg.shared_ff, rngs=rngs) if cfg.num_shared_experts else None

    def __call__(
        self,
        x_BLD: jax.Array,
        *,
        step: jax.Array | int | None = None,
        rng: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        cfg, dt = self.cfg, x_BLD.dtype
        B, L, D = x_BLD.shape
        bias_E = self.router_bias_E[...] if cfg.router_bias_rate > 0 else None
        r = routing.route(x_BLD, self.w_router_DE[...], cfg, bias_E=bias_E, step=step, rng=rng, train=train)
        w = tuple(p[...].astype(dt) for p in (self.w_gate_EDF, self.w_up_EDF, self.w_down_EFD))
        dispatch = resolve_dispatch(cfg.dispatch)
        if dispatch == "capacity":
            x_GSD = group_tokens(x_BLD, cfg.moe_group_size)
            G, S, _ = x_GSD.shape
            cap = dispatch_lib.capacity(S, cfg.num_experts, cfg.top_k, cfg.capacity_factor)
            impl = "einsum" if jax.default_backend() == "tpu" else "gather"
            y_GSD, kept_GSK = dispatch_lib.capacity_ffn(
                x_GSD, r.experts_BLK.reshape(G, S, -1), r.gates_BLK.reshape(G, S, -1), w, cap, impl
            )
            y_BLD, kept_BLK = y_GSD.reshape(B, L, D), kept_GSK.reshape(B, L, -1)
        else:
            y_BLD = dropless_ffn(x_BLD, r.experts_BLK, r.gates_BLK, w, cfg, dispatch)
            kept_BLK = jnp.ones(r.experts_BLK.shape, bool)
        if self.shared is not None:
            y_BLD = y_BLD + self.shared(x_BLD)
        aux = routing.aux_losses(r, kept_BLK, cfg.lb_granularity, dispatch_lib.num_batch_shards())
        aux["experts_BLK"], aux["gates_BLK"] = r.experts_BLK, r.gates_BLK
        if bias_E is not None:
            aux["router_bias_E"] = bias_E
        return constrain(y_BLD, "act_batch", "act_len", "act_embed"), aux


def dropless_ffn(x_BLD, experts_BLK, gates_BLK, w, cfg: ModelConfig, kernel: str) -> jax.Array:
    """The experts' output of every routed token (no drops), per data shard, with `kernel`
    `dropless_ragged` (sort + ragged_dot) or `dropless_blocked`."""
    B, L, D = x_BLD.shape
    if kernel == "dropless_ragged":
        local = dispatch_lib.ragged_local
    else:
        block = blocked_rows(B * L // dispatch_lib.num_batch_shards(), cfg.top_k, cfg.num_experts)

        def local(*args):
            return dispatch_lib.blocked_local(*args, block=block)

    y_TD = dispatch_lib.per_data_shard(
        local, x_BLD.reshape(B * L, D), experts_BLK.reshape(B * L, -1), gates_BLK.reshape(B * L, -1), w
    )
    return y_TD.reshape(B, L, D)
