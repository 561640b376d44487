"""The MoE layer against a naive per-token loop reference, and its aux losses by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mixlab import sharding
from mixlab.models import ModelConfig
from mixlab.models import moe as moe_lib

CFG = ModelConfig(vocab_size=32, d_model=16, num_layers=1, num_heads=2, d_ff=24, num_experts=4, top_k=2)


def one_device_mesh():
    return sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])


def loop_reference(x_BLD, layer: moe_lib.MoE, cfg: ModelConfig, cap: int):
    """Per token, in dispatch priority order (rank k of all tokens before rank k+1), with capacity."""
    w_r = np.asarray(layer.w_router_DE[...], np.float64)
    weights = (layer.w_gate_EDF, layer.w_up_EDF, layer.w_down_EFD)
    wg, wu, wd = (np.asarray(w[...], np.float64) for w in weights)
    x = np.asarray(x_BLD, np.float64)
    B, L, _ = x.shape
    out = np.zeros_like(x)
    for b in range(B):
        logits = x[b] @ w_r
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        order = np.argsort(-probs, axis=-1, kind="stable")[:, : cfg.top_k]
        gates = np.take_along_axis(probs, order, -1)
        if cfg.norm_topk_prob:
            gates /= gates.sum(-1, keepdims=True)
        used = np.zeros(cfg.num_experts, int)
        for k in range(cfg.top_k):
            for t in range(L):
                e = order[t, k]
                if used[e] >= cap:
                    continue
                used[e] += 1
                h = x[b, t] @ wg[e]
                h = h / (1 + np.exp(-h)) * (x[b, t] @ wu[e])
                out[b, t] += gates[t, k] * (h @ wd[e])
    return out


@pytest.mark.parametrize("capacity_factor", [1.0, 4.0])
def test_moe_equals_loop_reference(capacity_factor):
    cfg = ModelConfig(**{**CFG.__dict__, "capacity_factor": capacity_factor})
    with sharding.use_mesh(one_device_mesh()):
        layer = moe_lib.MoE(cfg, rngs=nnx.Rngs(0))
        x = jax.random.normal(jax.random.key(1), (3, 10, cfg.d_model))
        y, aux = layer(x)
    cap = moe_lib.capacity(10, cfg.num_experts, cfg.top_k, capacity_factor)
    np.testing.assert_allclose(np.asarray(y), loop_reference(x, layer, cfg, cap), atol=1e-5, rtol=1e-4)
    if capacity_factor >= cfg.num_experts / cfg.top_k:  # every assignment fits
        assert float(aux["drop_frac"]) == 0.0
    else:
        assert float(aux["drop_frac"]) > 0.0


def test_moe_gradients_equal_loop_reference():
    cfg = ModelConfig(**{**CFG.__dict__, "capacity_factor": 4.0})
    with sharding.use_mesh(one_device_mesh()):
        layer = moe_lib.MoE(cfg, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, cfg.d_model))
    graphdef, params = nnx.split(layer)

    def fast(params, x):
        return jnp.sum(jnp.sin(nnx.merge(graphdef, params)(x)[0]))

    def loop(params, x):  # differentiable per-token loop, no capacity (cf covers all tokens)
        m = nnx.merge(graphdef, params)
        logits = x @ m.w_router_DE[...]
        gates, experts = jax.lax.top_k(jax.nn.softmax(logits, -1), cfg.top_k)
        gates = gates / gates.sum(-1, keepdims=True)
        rows = []
        for b in range(x.shape[0]):
            for t in range(x.shape[1]):
                acc = jnp.zeros(cfg.d_model)
                for k in range(cfg.top_k):
                    e = experts[b, t, k]
                    h = jax.nn.silu(x[b, t] @ m.w_gate_EDF[...][e]) * (x[b, t] @ m.w_up_EDF[...][e])
                    acc = acc + gates[b, t, k] * (h @ m.w_down_EFD[...][e])
                rows.append(acc)
        return jnp.sum(jnp.sin(jnp.stack(rows)))

    g_fast = jax.grad(fast, argnums=(0, 1))(params, x)
    g_loop = jax.grad(loop, argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_loop), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4)


def test_aux_losses_by_hand():
    # Two tokens, two experts, top-1: token 0 -> expert 0 (p=.75), token 1 -> expert 0 (p=.5 tie -> 0).
    logits = jnp.log(jnp.array([[[0.75, 0.25], [0.5, 0.5]]]))
    probs = jax.nn.softmax(logits, -1)
    experts = jnp.array([[[0], [0]]])
    kept = jnp.array([[[True], [False]]])
    aux = moe_lib.aux_losses(logits, probs, experts, kept)
    # f = (1, 0); P = (0.625, 0.375); LB = 2 * 0.625
    assert float(aux["lb_loss"]) == pytest.approx(1.25)
    assert float(aux["z_loss"]) == pytest.approx(0.0, abs=1e-12)  # logits are log-probs: lse = 0
    assert float(aux["drop_frac"]) == pytest.approx(0.5)
    h0 = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    assert float(aux["router_entropy"]) == pytest.approx((h0 + np.log(2)) / 2, rel=1e-5)


def test_capacity_priority_first_choices_win():
    # Three tokens all pick expert 0 first and expert 1 second; capacity 2 per expert.
    experts = jnp.array([[[0, 1], [0, 1], [0, 1]]])
    gates = jnp.full((1, 3, 2), 0.5)
    dispatch, _, kept = moe_lib.capacity_dispatch(experts, gates, 2, 2)
    # First choices of tokens 0, 1 fit; token 2's first choice is dropped; second choices of 0, 1 fit.
    np.testing.assert_array_equal(np.asarray(kept[0]), [[True, True], [True, True], [False, False]])
    assert np.asarray(dispatch).sum() == 4
