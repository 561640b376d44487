"""Transformer building blocks: embedding, RMSNorm, rotary attention (GQA, with a KV-cache decode
step), SwiGLU MLP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixlab.models.config import ModelConfig
from mixlab.models.ops import causal_attention, linear, logits_f32, swiglu_ffn
from mixlab.sharding import constrain


def embed_std(d_model: int) -> float:
    """Std of the token embedding and of an untied readout: 1/sqrt(2 d_model), nanodo's 1/sqrt(d_model)
    over sqrt(2) (0.026 at GPT-2's d_model 768, where GPT-2 has 0.02).

    The readout is tied and unscaled (nanodo, GPT-2): at init the logits are ~N(0, 1/2) at every width
    and the loss starts ~1/4 nat above ln(vocab): 5.77 at the quickstart size (ln 259 = 5.56), 5.82 at
    d_model 512 (tests/models/init_test.py). Until 2026-12 the embedding had std 1 and the logits a
    d^-1/2 scale: the embedding dominated the residual stream, each token predicted itself and the loss
    started at 11.0 (21.6 at d 512); a 1/d scale started at ln(vocab) but learned 3x slower. The std
    trades the two: the readout's gain (logits per unit of alignment) is std * d_model, the excess at
    init ~std^2 * d_model / 2. Held-out loss at steps 0/30/60/120 of the quickstart's 300 (MoE,
    benchmarks/learning.py's data, 2026-12-03): old 9.77/3.20/2.65/2.24; std 0.02: 5.55/3.25/2.90/2.29;
    0.5/sqrt(d): 5.59/3.02/2.50/1.98; this: 5.64/2.90/2.40/1.94; 1/sqrt(d): 5.78/2.72/2.29/1.84, but
    6.2 (+11%) at init at d_model 512.
    """
    return (2 * d_model) ** -0.5


def dense_init(fan_in: int, scale: float = 1.0) -> nnx.Initializer:
    """Truncated normal with std scale/sqrt(fan_in) (fan-in scaling independent of the tensor layout)."""
    return nnx.initializers.truncated_normal(stddev=scale / fan_in**0.5)


class Embed(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        init = nnx.initializers.normal(stddev=embed_std(cfg.d_model))
        self.embedding_VD = nnx.Param(
            init(rngs.params(), (cfg.vocab_size, cfg.d_model)), out_sharding=("vocab", "embed")
        )

    def __call__(self, tokens_BL: jax.Array) -> jax.Array:
        x_BLD = jnp.take(self.embedding_VD[...], tokens_BL, axis=0)
        return constrain(x_BLD.astype(self.cfg.compute_dtype), "act_batch", "act_len", "act_embed")

    def attend(self, x_BLD: jax.Array) -> jax.Array:
        """Tied output projection, unscaled (GPT-2, nanodo); logits in float32 for a stable softmax."""
        return logits_f32(x_BLD, self.embedding_VD[...].astype(x_BLD.dtype))


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float):
        self.eps = eps
        self.scale_D = nnx.Param(jnp.ones((dim,), jnp.float32), out_sharding=("norm",))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        scale = self.scale_D[...].reshape((1,) * (x.ndim - 1) + (-1,))
        return (x32 * scale).astype(x.dtype)


_ACT = ("act_batch", "act_len", "act_embed")
# KV cache [B, M, S, H], split over the batch only. Heads before positions: the decode step's batched
# matmuls take it as is, where [B, S, M, H] made XLA:CPU transpose the whole cache every layer and step
# (micro model, batch 8, 2 busy cores: 3.7 vs 1.4 ms a step at S = 512, 20 vs 6.8 ms at S = 2048).
KV_CACHE_AXES = ("act_batch", None, "act_len", None)


def cached_attention(
    q_BLNH: jax.Array, k_BMSH: jax.Array, v_BMSH: jax.Array, q_pos_BL: jax.Array
) -> jax.Array:
    """Queries at per-row positions attend to cache entries s <= their position; the same numerics as
    `ops.causal_attention` (q pre-scaled, q.k in the compute dtype, softmax statistics in float32), so
    cached decoding matches a full forward to float rounding."""
    B, L, N, H = q_BLNH.shape
    M, S = k_BMSH.shape[1], k_BMSH.shape[2]
    dt = q_BLNH.dtype
    q_BLMQH = (q_BLNH * jnp.asarray(H**-0.5, dt)).reshape(B, L, M, N // M, H)
    s_BMQLS = jnp.einsum("blmqh,bmsh->bmqls", q_BLMQH, k_BMSH).astype(jnp.float32)
    visible_BLS = jnp.arange(S)[None, None, :] <= q_pos_BL[:, :, None]
    s_BMQLS = jnp.where(visible_BLS[:, None, None], s_BMQLS, -1e30)
    p_BMQLS = jnp.exp(s_BMQLS - jnp.max(s_BMQLS, axis=-1, keepdims=True))
    denom_BLMQ = jnp.einsum("bmqls->blmq", p_BMQLS)
    o_BLMQH = jnp.einsum("bmqls,bmsh->blmqh", p_BMQLS.astype(dt), v_BMSH)
    return (o_BLMQH / denom_BLMQ[..., None].astype(dt)).reshape(B, L, N, H)


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

    def _qkv(self, x_BLD: jax.Array, positions_BL: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Rotated queries [B, L, N, H] and keys [B, L, M, H], values [B, L, M, H]."""
        cfg, dt = self.cfg, x_BLD.dtype
        B, L, D = x_BLD.shape
        N, M, H = cfg.num_heads, cfg.kv_heads, cfg.hdim
        x_TD = x_BLD.reshape(B * L, D)  # projections as 2-D matmuls with a hand-written backward

        def project(w, heads):
            return linear(x_TD, w[...].astype(dt).reshape(D, heads * H)).reshape(B, L, heads, H)

        q_BLNH = rope(project(self.wq_DNH, N), positions_BL, cfg.rope_theta)
        k_BLMH = rope(project(self.wk_DMH, M), positions_BL, cfg.rope_theta)
        v_BLMH = project(self.wv_DMH, M)
        return constrain(q_BLNH, "act_batch", "act_len", "act_heads", None), k_BLMH, v_BLMH

    def _out(self, o_BLNH: jax.Array) -> jax.Array:
        B, L, N, H = o_BLNH.shape
        w_TD = self.wo_NHD[...].astype(o_BLNH.dtype).reshape(N * H, -1)
        return constrain(linear(o_BLNH.reshape(B * L, N * H), w_TD).reshape(B, L, -1), *_ACT)

    def __call__(self, x_BLD: jax.Array, positions_BL: jax.Array) -> jax.Array:
        q_BLNH, k_BLMH, v_BLMH = self._qkv(x_BLD, positions_BL)
        return self._out(causal_attention(q_BLNH, k_BLMH, v_BLMH))

    def prefill(
        self, x_BLD: jax.Array, positions_BL: jax.Array, cache_len: int
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """`__call__`, also returning its rotated keys and values as a KV cache [B, M, S, H] of
        S = `cache_len` entries, zeros past L. GQA caches the M key/value heads, not their N-head
        expansion."""
        q_BLNH, k_BLMH, v_BLMH = self._qkv(x_BLD, positions_BL)
        pad = ((0, 0), (0, 0), (0, cache_len - x_BLD.shape[1]), (0, 0))
        k_BMSH, v_BMSH = (
            constrain(jnp.pad(a.transpose(0, 2, 1, 3), pad), *KV_CACHE_AXES) for a in (k_BLMH, v_BLMH)
        )
        return self._out(causal_attention(q_BLNH, k_BLMH, v_BLMH)), k_BMSH, v_BMSH

    def decode(
        self, x_B1D: jax.Array, pos_B: jax.Array, k_BMSH: jax.Array, v_BMSH: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """One new token per row at its own position `pos_B`: its key and value are written into the
        cache at index pos_B[b], then it attends to cache entries 0..pos_B[b]. Entries past a row's
        position (stale prefill padding, or nothing yet) are masked out."""
        q_B1NH, k_B1MH, v_B1MH = self._qkv(x_B1D, pos_B[:, None])

        def write(cache_BMSH, new_B1MH):
            def row(cache_MSH, new_M1H, pos):
                return jax.lax.dynamic_update_slice_in_dim(cache_MSH, new_M1H, pos, axis=1)

            # A vmapped update lowers to a scatter with a batch dim: local to each data shard.
            new_BM1H = new_B1MH.transpose(0, 2, 1, 3).astype(cache_BMSH.dtype)
            return constrain(jax.vmap(row)(cache_BMSH, new_BM1H, pos_B), *KV_CACHE_AXES)

        k_BMSH, v_BMSH = write(k_BMSH, k_B1MH), write(v_BMSH, v_B1MH)
        return self._out(cached_attention(q_B1NH, k_BMSH, v_BMSH, pos_B[:, None])), k_BMSH, v_BMSH


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
        return constrain(out_1TD.reshape(B, L, D), *_ACT)
