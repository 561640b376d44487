"""Transformer building blocks: embedding, RMSNorm, rotary attention (GQA), SwiGLU MLP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixlab.models.config import ModelConfig
from mixlab.sharding import constrain


def dense_init(fan_in: int, scale: float = 1.0) -> nnx.Initializer:
    """Truncated normal with std scale/sqrt(fan_in) (fan-in scaling independent of the tensor layout)."""
    return nnx.initializers.truncated_normal(stddev=scale / fan_in**0.5)


class Embed(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        init = nnx.initializers.normal(stddev=1.0)
        self.embedding_VD = nnx.Param(
            init(rngs.params(), (cfg.vocab_size, cfg.d_model)), out_sharding=("vocab", "embed")
        )

    def __call__(self, tokens_BL: jax.Array) -> jax.Array:
        x_BLD = jnp.take(self.embedding_VD[...], tokens_BL, axis=0)
        return constrain(x_BLD.astype(self.cfg.compute_dtype), "act_batch", "act_len", "act_embed")

    def attend(self, x_BLD: jax.Array) -> jax.Array:
        """Tied output projection; logits in float32 for a stable softmax."""
        scale = self.cfg.d_model**-0.5  # embeddings have unit std; keep initial logits O(1)
        w_VD = self.embedding_VD[...].astype(x_BLD.dtype)
        logits = jnp.einsum("bld,vd->blv", x_BLD, w_VD, preferred_element_type=jnp.float32)
        return logits * scale


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float):
        self.eps = eps
        self.scale_D = nnx.Param(jnp.ones((dim,), jnp.float32), out_sharding=("norm",))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        scale = self.scale_D[...].reshape((1,) * (x.ndim - 1) + (-1,))
        return (x32 * scale).astype(x.dtype)


def rope(x_BLNH: jax.Array, positions_BL: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding on (first half, second half) pairs of the head dim."""
    half = x_BLNH.shape[-1] // 2
    freq_h = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle_BLh = positions_BL[..., None].astype(jnp.float32) * freq_h[None, None, :]
    sin, cos = jnp.sin(angle_BLh)[:, :, None, :], jnp.cos(angle_BLh)[:, :, None, :]
    x1, x2 = jnp.split(x_BLNH.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BLNH.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        D, N, M, H = cfg.d_model, cfg.num_heads, cfg.kv_heads, cfg.hdim
        self.wq_DNH = nnx.Param(
            dense_init(D)(rngs.params(), (D, N, H)), out_sharding=("embed", "heads", "head_dim")
        )
        self.wk_DMH = nnx.Param(
            dense_init(D)(rngs.params(), (D, M, H)), out_sharding=("embed", "kv_heads", "head_dim")
        )
        self.wv_DMH = nnx.Param(
            dense_init(D)(rngs.params(), (D, M, H)), out_sharding=("embed", "kv_heads", "head_dim")
        )
        out_scale = (2 * cfg.num_layers) ** -0.5  # residual branches sum over 2 * layers
        self.wo_NHD = nnx.Param(
            dense_init(N * H, out_scale)(rngs.params(), (N, H, D)),
            out_sharding=("heads", "head_dim", "embed"),
        )

    def __call__(self, x_BLD: jax.Array, positions_BL: jax.Array) -> jax.Array:
        cfg, dt = self.cfg, x_BLD.dtype
        q_BLNH = jnp.einsum("bld,dnh->blnh", x_BLD, self.wq_DNH[...].astype(dt))
        k_BLMH = jnp.einsum("bld,dmh->blmh", x_BLD, self.wk_DMH[...].astype(dt))
        v_BLMH = jnp.einsum("bld,dmh->blmh", x_BLD, self.wv_DMH[...].astype(dt))
        q_BLNH = rope(q_BLNH, positions_BL, cfg.rope_theta)
        k_BLMH = rope(k_BLMH, positions_BL, cfg.rope_theta)
        q_BLNH = constrain(q_BLNH, "act_batch", "act_len", "act_heads", None)
        # Handles grouped-query attention (M divides N) and the causal mask; XLA implementation on CPU.
        o_BLNH = jax.nn.dot_product_attention(q_BLNH, k_BLMH, v_BLMH, is_causal=True)
        out_BLD = jnp.einsum("blnh,nhd->bld", o_BLNH, self.wo_NHD[...].astype(dt))
        return constrain(out_BLD, "act_batch", "act_len", "act_embed")


class Mlp(nnx.Module):
    """SwiGLU feed-forward: down(silu(x @ gate) * (x @ up))."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        D, F = cfg.d_model, cfg.d_ff
        out_scale = (2 * cfg.num_layers) ** -0.5
        self.w_gate_DF = nnx.Param(dense_init(D)(rngs.params(), (D, F)), out_sharding=("embed", "mlp"))
        self.w_up_DF = nnx.Param(dense_init(D)(rngs.params(), (D, F)), out_sharding=("embed", "mlp"))
        self.w_down_FD = nnx.Param(
            dense_init(F, out_scale)(rngs.params(), (F, D)), out_sharding=("mlp", "embed")
        )

    def __call__(self, x_BLD: jax.Array) -> jax.Array:
        dt = x_BLD.dtype
        gate_BLF = jnp.einsum("bld,df->blf", x_BLD, self.w_gate_DF[...].astype(dt))
        up_BLF = jnp.einsum("bld,df->blf", x_BLD, self.w_up_DF[...].astype(dt))
        h_BLF = constrain(jax.nn.silu(gate_BLF) * up_BLF, "act_batch", "act_len", "act_mlp")
        out_BLD = jnp.einsum("blf,fd->bld", h_BLF, self.w_down_FD[...].astype(dt))
        return constrain(out_BLD, "act_batch", "act_len", "act_embed")
