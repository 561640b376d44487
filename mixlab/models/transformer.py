"""Pre-norm decoder-only transformer whose feed-forward layers are dense or MoE."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixlab.models.config import ModelConfig
from mixlab.models.layers import Attention, Embed, Mlp, RMSNorm
from mixlab.models.moe import MoE


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg, rngs=rngs)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ffn = MoE(cfg, rngs=rngs) if cfg.is_moe else Mlp(cfg, rngs=rngs)

    def __call__(self, x_BLD: jax.Array, positions_BL: jax.Array) -> tuple[jax.Array, dict]:
        x_BLD = x_BLD + self.attn(self.attn_norm(x_BLD), positions_BL)
        h_BLD = self.ffn_norm(x_BLD)
        if isinstance(self.ffn, MoE):
            y_BLD, aux = self.ffn(h_BLD)
        else:
            y_BLD, aux = self.ffn(h_BLD), {}
        return x_BLD + y_BLD, aux


class Transformer(nnx.Module):
    """`model(tokens_BL) -> (logits_BLV float32, aux)`.

    `aux` holds `lb_loss` and `z_loss` (means over MoE layers; 0 for a dense model) and `moe`, a dict
    of per-layer arrays stacked on a leading MoE-layer axis: `load_E`, `drop_frac`, `router_entropy`,
    `experts_BLK`, `gates_BLK` (empty for a dense model).
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = Embed(cfg, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        if not cfg.tie_embeddings:
            self.unembed_DV = nnx.Param(
                nnx.initializers.normal(stddev=cfg.d_model**-0.5)(
                    rngs.params(), (cfg.d_model, cfg.vocab_size)
                ),
                out_sharding=("embed", "vocab"),
            )

    def __call__(self, tokens_BL: jax.Array) -> tuple[jax.Array, dict]:
        positions_BL = jnp.broadcast_to(jnp.arange(tokens_BL.shape[1]), tokens_BL.shape)
        x_BLD = self.embed(tokens_BL)
        layer_aux = []
        for block in self.blocks:
            x_BLD, aux = block(x_BLD, positions_BL)
            if aux:
                layer_aux.append(aux)
        x_BLD = self.final_norm(x_BLD)
        if self.cfg.tie_embeddings:
            logits_BLV = self.embed.attend(x_BLD)
        else:
            w_DV = self.unembed_DV[...].astype(x_BLD.dtype)
            logits_BLV = jnp.einsum("bld,dv->blv", x_BLD, w_DV, preferred_element_type=jnp.float32)
        if layer_aux:
            moe = {k: jnp.stack([a[k] for a in layer_aux]) for k in layer_aux[0]}
            out = {"lb_loss": jnp.mean(moe.pop("lb_loss")), "z_loss": jnp.mean(moe.pop("z_loss"))}
        else:
            moe, out = {}, {"lb_loss": jnp.zeros(()), "z_loss": jnp.zeros(())}
        return logits_BLV, {**out, "moe": moe}
