"""Transformer building blocks: embedding, RMSNorm, rotary attention (GQA), SwiGLU MLP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixlab.models.config import ModelConfig
from mixlab.models.ops import causal_attention, linear, logits_f32, swiglu_ffn
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
        # Embeddings have unit std and x is RMS-normalised, so at init x ~ e(token): the own-token logit
        # is ~sqrt(d_model) and the initial loss is above ln(vocab) (10.5 at d_model 128). 1/d_model would
        # start at ln(vocab) but learned ~3x slower on the quickstart (loss 4.9 vs 2.6 at step 75).
        scale = self.cfg.d_model**-0.5
        return logits_f32(x_BLD, self.embedding_VD[...].astype(x_BLD.dtype)) * scale


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
    """Rotary embedding on (first half, second half) pairs of the head dim.

    The pair axis is reversed and signed instead of split and concatenated, so XLA fuses the whole
    rotation into one elementwise pass (the concatenate and its transpose were ~3% of a CPU step).
    Angles in float32; the rotation runs in the input dtype."""
    B, L, N, H = x_BLNH.shape
    half = H // 2
    freq_h = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle_BLh = positions_BL[..., None].astype(jnp.float32) * freq_h[None, None, :]
    cos_BL1h = jnp.cos(angle_BLh)[:, :, None, None, :].astype(x_BLNH.dtype)
    sin_BLh = jnp.sin(angle_BLh)
    sin_BL2h = jnp.stack([-sin_BLh, sin_BLh], axis=2)[:, :, None].astype(x_BLNH.dtype)
    x_BLN2h = x_BLNH.reshape(B, L, N, 2, half)
    out = x_BLN2h * cos_BL1h + x_BLN2h[..., ::-1, :] * sin_BL2h
    return out.reshape(B, L, N, H)


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
        B, L, D = x_BLD.shape
        N, M, H = cfg.num_heads, cfg.kv_heads, cfg.hdim
        x_TD = x_BLD.reshape(B * L, D)  # projections as 2-D matmuls with a hand-written backward

        def project(w, heads):
            return linear(x_TD, w[...].astype(dt).reshape(D, heads * H)).reshape(B, L, heads, H)

        q_BLNH = rope(project(self.wq_DNH, N), positions_BL, cfg.rope_theta)
        k_BLMH = rope(project(self.wk_DMH, M), positions_BL, cfg.rope_theta)
        v_BLMH = project(self.wv_DMH, M)
        q_BLNH = constrain(q_BLNH, "act_batch", "act_len", "act_heads", None)
        o_BLNH = causal_attention(q_BLNH, k_BLMH, v_BLMH)
        out_TD = linear(o_BLNH.reshape(B * L, N * H), self.wo_NHD[...].astype(dt).reshape(N * H, D))
        return constrain(out_TD.reshape(B, L, D), "act_batch", "act_len", "act_embed")


class Mlp(nnx.Module):
    """SwiGLU feed-forward: down(silu(x @ gate) * (x @ up)), hidden size d_ff (default cfg.d_ff)."""

    def __init__(self, cfg: ModelConfig, d_ff: int = 0, *, rngs: nnx.Rngs):
        D, F = cfg.d_model, d_ff or cfg.d_ff
        out_scale = (2 * cfg.num_layers) ** -0.5
        self.w_gate_DF = nnx.Param(dense_init(D)(rngs.params(), (D, F)), out_sharding=("embed", "mlp"))
        self.w_up_DF = nnx.Param(dense_init(D)(rngs.params(), (D, F)), out_sharding=("embed", "mlp"))
        self.w_down_FD = nnx.Param(
            dense_init(F, out_scale)(rngs.params(), (F, D)), out_sharding=("mlp", "embed")
        )

    def __call__(self, x_BLD: jax.Array) -> jax.Array:
        B, L, D = x_BLD.shape
        dt = x_BLD.dtype
        w_gate_1DF, w_up_1DF, w_down_1FD = (
            w[...].astype(dt)[None] for w in (self.w_gate_DF, self.w_up_DF, self.w_down_FD)
        )
        out_1TD = swiglu_ffn(x_BLD.reshape(1, B * L, D), w_gate_1DF, w_up_1DF, w_down_1FD)
        return constrain(out_1TD.reshape(B, L, D), "act_batch", "act_len", "act_embed")
