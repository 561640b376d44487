"""Mixture-of-experts feed-forward layer: top-k routed SwiGLU experts plus optional shared experts.

1. `routing.route`: float32 router -> scores -> top-k experts and gates (jitter, warmup, bias).
2. dispatch (`dispatch.experts_ffn`): capacity (may drop assignments), dropless (`dropless.py`), or
   a decode step's kernel; each runs the experts' SwiGLUs and combines their outputs by the gates.
3. shared experts: a dense SwiGLU every token goes through, added to the routed output.
4. `routing.aux_losses`: load balancing, router z-loss, telemetry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixlab.models import dispatch as dispatch_lib
from mixlab.models import dropless as dropless_lib
from mixlab.models import routing
from mixlab.models.config import ModelConfig
from mixlab.models.layers import Mlp, dense_init
from mixlab.sharding import constrain


class RouterBias(nnx.Variable):
    """Aux-loss-free balancing bias (DeepSeek-V3). Not an `nnx.Param`: it gets no gradient and is
    updated by `routing.bias_update` in the train step, outside the optimizer."""


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
        dropless: bool = False,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(y_BLD, aux). `dropless`: no assignment is dropped whatever `cfg.dispatch` says (generation
        and dropless evaluation); `dispatch.experts_ffn` picks the kernel."""
        cfg, dt = self.cfg, x_BLD.dtype
        bias_E = self.router_bias_E[...] if cfg.router_bias_rate > 0 else None
        r = routing.route(x_BLD, self.w_router_DE[...], cfg, bias_E=bias_E, step=step, rng=rng, train=train)
        w = tuple(p[...].astype(dt) for p in (self.w_gate_EDF, self.w_up_EDF, self.w_down_EFD))
        y_BLD, kept_BLK = dispatch_lib.experts_ffn(
            x_BLD, r.experts_BLK, r.gates_BLK, w, cfg, dropless=dropless
        )
        if self.shared is not None:
            y_BLD = y_BLD + self.shared(x_BLD)
        aux = routing.aux_losses(r, kept_BLK, cfg.lb_granularity, dropless_lib.num_batch_shards())
        aux["experts_BLK"], aux["gates_BLK"] = r.experts_BLK, r.gates_BLK
        if bias_E is not None:
            aux["router_bias_E"] = bias_E
        return constrain(y_BLD, "act_batch", "act_len", "act_embed"), aux
