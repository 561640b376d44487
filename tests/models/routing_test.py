"""Routing by hand: load-balancing granularities, z-loss, telemetry, warmup, jitter, aux-free bias."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixlab.models import ModelConfig, routing

CFG = ModelConfig(vocab_size=32, d_model=8, num_layers=1, num_heads=2, d_ff=8, num_experts=4, top_k=2)

# Four one-token sequences, two experts, top-1: chosen experts 0, 1, 1, 1.
PROBS_B1E = np.array([[[0.9, 0.1]], [[0.4, 0.6]], [[0.3, 0.7]], [[0.2, 0.8]]])
EXPERTS_B1K = np.array([[[0]], [[1]], [[1]], [[1]]])


@pytest.mark.parametrize(
    "granularity, shards, expected",
    [
        # Each sequence alone: f = its one-hot, so LB = 2 * P(chosen) = 1.8, 1.2, 1.4, 1.6 -> mean 1.5.
        ("sequence", 1, 1.5),
        # Shards {0,1}: f = (.5,.5), P = (.65,.35) -> 1.0; {2,3}: f = (0,1), P = (.25,.75) -> 1.5.
        ("micro_batch", 2, 1.25),
        # All four: f = (.25,.75), P = (.45,.55) -> 2 * (.1125 + .4125) = 1.05.
        ("global_batch", 1, 1.05),
        ("micro_batch", 1, 1.05),  # one shard is the global batch
    ],
)
def test_lb_loss_granularity_by_hand(granularity, shards, expected):
    got = routing.lb_loss(jnp.asarray(PROBS_B1E), jnp.asarray(EXPERTS_B1K), granularity, shards)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_aux_losses_and_telemetry_by_hand():
    logits = jnp.log(jnp.asarray(PROBS_B1E, jnp.float32))
    r = routing.Routing(logits, logits, jax.nn.softmax(logits), jnp.ones((4, 1, 1)), jnp.asarray(EXPERTS_B1K))
    kept = jnp.array([[[True]], [[False]], [[True]], [[True]]])
    aux = routing.aux_losses(r, kept, "global_batch")
    assert float(aux["lb_loss"]) == pytest.approx(1.05, rel=1e-6)
    assert float(aux["z_loss"]) == pytest.approx(0.0, abs=1e-12)  # logits are log-probs: lse = 0
    np.testing.assert_allclose(np.asarray(aux["load_E"]), [0.25, 0.75])
    assert float(aux["drop_frac"]) == 0.25
    h = [-(p * np.log(p)).sum() for p in PROBS_B1E[:, 0]]
    assert float(aux["router_entropy"]) == pytest.approx(np.mean(h), rel=1e-5)
    # z-loss: logsumexp(1, 2) = 2.3133, squared 5.3513
    r2 = r._replace(logits_BLE=jnp.array([[[1.0, 2.0]]]))
    assert float(routing.aux_losses(r2, kept, "sequence")["z_loss"]) == pytest.approx(5.3513, rel=1e-4)


@functools.partial(jax.jit, static_argnames=("cfg", "train"))
def jit_route(cfg, x, w, bias, step, rng, train):
    return routing.route(x, w, cfg, bias_E=bias, step=step, rng=rng, train=train)


def route(cfg, x, w, bias=None, step=None, rng=None, train=True):
    return jit_route(cfg, x, w, bias, None if step is None else jnp.int32(step), rng, train)


def test_routing_warmup_mixes_learned_and_random_logits():
    cfg = ModelConfig(**{**CFG.__dict__, "routing_warmup_steps": 10})
    x = jax.random.normal(jax.random.key(0), (2, 5, cfg.d_model))
    w = jax.random.normal(jax.random.key(1), (cfg.d_model, cfg.num_experts))
    rng = jax.random.key(7)
    learned = np.asarray(jnp.einsum("bld,de->ble", x, w))
    at = {t: route(cfg, x, w, step=t, rng=rng) for t in (0, 5, 10, 20)}
    noise = np.asarray(at[0].route_logits_BLE)  # t = 0: alpha = 0, purely random logits
    assert np.abs(noise - learned).max() > 0.5 and abs(noise.std() - 1) < 0.3
    w2 = w * 3  # other router weights, same rng: the same random logits
    np.testing.assert_allclose(
        np.asarray(route(cfg, x, w2, step=0, rng=rng).route_logits_BLE), noise, atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(at[5].route_logits_BLE), 0.5 * learned + 0.5 * noise, atol=1e-5)
    for t in (10, 20):  # alpha = 1 from t_w on
        np.testing.assert_allclose(np.asarray(at[t].route_logits_BLE), learned, atol=1e-5)
    for t, r in at.items():  # selection and gates follow the logits used for routing
        np.testing.assert_allclose(np.asarray(r.logits_BLE), learned, atol=1e-5)  # z-loss sees these
        probs = jax.nn.softmax(r.route_logits_BLE)
        top = jax.lax.top_k(probs, cfg.top_k)
        np.testing.assert_array_equal(np.asarray(r.experts_BLK), np.asarray(top[1]), err_msg=f"t={t}")
    # Fresh noise per token: identical tokens get different random logits.
    same = jnp.broadcast_to(x[:1, :1], (1, 3, cfg.d_model))
    n = np.asarray(route(cfg, same, w, step=0, rng=rng).route_logits_BLE)
    assert np.abs(n[0, 0] - n[0, 1]).max() > 1e-3
    # Eval (train=False) and a call without a step never warm up.
    np.testing.assert_allclose(
        np.asarray(route(cfg, x, w, step=0, rng=rng, train=False).route_logits_BLE), learned, atol=1e-5
    )


def test_router_jitter_multiplies_the_router_input():
    cfg = ModelConfig(**{**CFG.__dict__, "router_jitter": 0.1})
    x = jax.random.normal(jax.random.key(0), (2, 5, cfg.d_model))
    w = jnp.eye(cfg.d_model)[:, : cfg.num_experts]  # logits = the first 4 input features
    r = route(cfg, x, w, rng=jax.random.key(3))
    ratio = np.asarray(r.logits_BLE) / np.asarray(x[..., :4])
    assert 0.9 <= ratio.min() < 0.97 and 1.03 < ratio.max() <= 1.1
    np.testing.assert_allclose(np.asarray(route(cfg, x, w, train=False).logits_BLE), np.asarray(x[..., :4]))
    with pytest.raises(ValueError, match="rng"):
        routing.route(x, w, cfg, train=True)


@pytest.mark.parametrize("score_fn", ["softmax", "sigmoid"])
def test_bias_changes_selection_not_gate_values(score_fn):
    cfg = ModelConfig(**{**CFG.__dict__, "score_fn": score_fn, "norm_topk_prob": False})
    x = jax.random.normal(jax.random.key(0), (2, 16, cfg.d_model))
    w = jax.random.normal(jax.random.key(1), (cfg.d_model, cfg.num_experts))
    plain = route(cfg, x, w, bias=jnp.zeros(4))
    biased = route(cfg, x, w, bias=jnp.array([0.0, 0.0, 0.0, 5.0]))  # expert 3 always wins a slot
    assert not np.array_equal(np.asarray(plain.experts_BLK), np.asarray(biased.experts_BLK))
    assert np.all(np.asarray(biased.experts_BLK)[..., 0] == 3)
    scores = np.asarray(jax.nn.softmax(x @ w) if score_fn == "softmax" else jax.nn.sigmoid(x @ w))
    # Gates are the unbiased scores of the chosen experts.
    np.testing.assert_allclose(
        np.asarray(biased.gates_BLK),
        np.take_along_axis(scores, np.asarray(biased.experts_BLK), -1),
        rtol=1e-5,
    )
    # The bias gets no gradient.
    g = jax.grad(lambda b: jnp.sum(routing.route(x, w, cfg, bias_E=b).gates_BLK))(jnp.ones(4))
    assert np.all(np.asarray(g) == 0)


def test_bias_update_moves_load_towards_uniform():
    cfg = ModelConfig(**{**CFG.__dict__, "router_bias_rate": 0.005})
    # Inputs with mean 0.5 and expert 0's router column shifted by 0.5: expert 0 wins most tokens.
    x = jax.random.normal(jax.random.key(0), (8, 32, cfg.d_model)) + 0.5
    w = jax.random.normal(jax.random.key(1), (cfg.d_model, cfg.num_experts)).at[:, 0].add(0.5)

    @jax.jit
    def step(bias):
        r = routing.route(x, w, cfg, bias_E=bias)
        load = jnp.mean(jax.nn.one_hot(r.experts_BLK, 4), axis=(0, 1, 2))
        return routing.bias_update(bias, load, cfg.router_bias_rate), load

    bias, loads = jnp.zeros(4), []
    for _ in range(200):
        bias, load = step(bias)
        loads.append(float(jnp.max(load)) * 4)  # max / mean load
    assert np.all(np.abs(np.asarray(bias)) <= 200 * 0.005 + 1e-6)  # moves by +-rate a step
    # max/mean load 1.58 -> about 1.16, oscillating by the step size (sign updates).
    assert loads[0] > 1.5 and max(loads[-20:]) < 1.25, loads
    assert float(bias[0]) < 0  # the overloaded expert 0 is chosen less
    np.testing.assert_allclose(
        routing.bias_update(jnp.zeros(4), jnp.array([0.4, 0.3, 0.2, 0.1]), 0.01), [-0.01, -0.01, 0.01, 0.01]
    )
