"""Kernels against plain JAX: chunked causal attention, the hand-written SwiGLU backward, RoPE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixlab.models import layers, ops


def test_causal_attention_equals_reference_across_chunks():
    # L = 300: chunks of 128, 128 and 44 queries; grouped-query attention with 4 heads on 2 kv heads.
    k = jax.random.split(jax.random.key(0), 4)
    q = jax.random.normal(k[0], (2, 300, 4, 8))
    kv = jax.random.normal(k[1], (2, 300, 2, 8)), jax.random.normal(k[2], (2, 300, 2, 8))
    dout = jax.random.normal(k[3], q.shape)

    def run(fn):
        return jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(fn(q, k, v) * dout), argnums=(0, 1, 2)))(
            q, *kv
        )

    def reference(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, is_causal=True)

    (v1, g1), (v2, g2) = run(ops.causal_attention), run(reference)
    np.testing.assert_allclose(float(v1), float(v2), rtol=1e-5)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-4)


@pytest.mark.slow
def test_swiglu_backward_equals_autodiff():
    k = jax.random.split(jax.random.key(1), 5)
    x = jax.random.normal(k[0], (3, 10, 8))
    ws = (
        jax.random.normal(k[1], (3, 8, 12)),
        jax.random.normal(k[2], (3, 8, 12)),
        jax.random.normal(k[3], (3, 12, 8)),
    )
    dy = jax.random.normal(k[4], x.shape)

    def plain(x, wg, wu, wd):
        h = jax.nn.silu(jnp.einsum("xtd,xdf->xtf", x, wg)) * jnp.einsum("xtd,xdf->xtf", x, wu)
        return jnp.einsum("xtf,xfd->xtd", h, wd)

    for fn in (ops.swiglu_ffn, plain):
        np.testing.assert_allclose(np.asarray(fn(x, *ws)), np.asarray(plain(x, *ws)), rtol=1e-5, atol=1e-5)
    got = jax.vjp(ops.swiglu_ffn, x, *ws)[1](dy)
    want = jax.vjp(plain, x, *ws)[1](dy)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=1e-4)


def test_linear_backward_equals_autodiff():
    x, w, dy = (jax.random.normal(jax.random.key(i), s) for i, s in enumerate([(6, 5), (5, 3), (6, 3)]))
    got = jax.vjp(ops.linear, x, w)[1](dy)
    want = jax.vjp(jnp.matmul, x, w)[1](dy)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


def test_logits_backward_equals_autodiff_and_stays_in_compute_dtype():
    x, w = jax.random.normal(jax.random.key(0), (2, 3, 8)), jax.random.normal(jax.random.key(1), (5, 8))
    dy = jax.random.normal(jax.random.key(2), (2, 3, 5))
    got = jax.vjp(ops.logits_f32, x, w)[1](dy)
    want = jax.vjp(lambda x, w: jnp.einsum("bld,vd->blv", x, w), x, w)[1](dy)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    y, vjp = jax.vjp(ops.logits_f32, xb, wb)
    assert y.dtype == jnp.float32 and all(g.dtype == jnp.bfloat16 for g in vjp(dy))


def test_rope_rotates_half_pairs():
    x = jax.random.normal(jax.random.key(2), (2, 7, 3, 8))
    pos = jnp.broadcast_to(jnp.arange(7), (2, 7)) + 3
    half = 4
    freq = 10_000.0 ** (-np.arange(half) / half)
    angle = np.asarray(pos)[..., None, None] * freq  # [B, L, 1, h]
    x1, x2 = np.asarray(x[..., :half]), np.asarray(x[..., half:])
    want = np.concatenate(
        [x1 * np.cos(angle) - x2 * np.sin(angle), x2 * np.cos(angle) + x1 * np.sin(angle)], -1
    )
    np.testing.assert_allclose(np.asarray(layers.rope(x, pos, 10_000.0)), want, atol=1e-5)
    # Relative: <rope(q, i), rope(k, j)> depends on i - j only.
    q, kk = x[:1, :1], x[1:, 1:2]
    dot = [
        float(
            jnp.sum(layers.rope(q, jnp.full((1, 1), i), 1e4) * layers.rope(kk, jnp.full((1, 1), i + 2), 1e4))
        )
        for i in (0, 5)
    ]
    np.testing.assert_allclose(dot[0], dot[1], rtol=1e-4)
