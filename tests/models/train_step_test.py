"""The model inside `train.make_train_step`: routing warmup sees the step, the aux-free bias is updated
outside the optimizer, and eval calls stay deterministic."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from mixlab import sharding, train
from mixlab.models import ModelConfig, Transformer
from tests.models.helpers import init, one_device_mesh

# One MoE layer: these tests are about the step around the model, and compiling dominates their time.
CFG = ModelConfig(
    vocab_size=64, d_model=32, num_layers=1, num_heads=4, d_ff=32, num_experts=4, top_k=2, capacity_factor=2.0
)
TRAIN = ml_collections.ConfigDict(dict(lb_loss_coef=0.01, z_loss_coef=1e-3))


def make_step(cfg, seed=0):
    model = init(lambda rngs: Transformer(cfg, rngs=rngs), one_device_mesh())
    graphdef, params = nnx.split(model)
    tx = optax.adamw(1e-2, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda a: a.ndim >= 2, p))
    setup = types.SimpleNamespace(model=cfg, mixture=types.SimpleNamespace(names=("a", "b")))
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    # Inputs committed and outputs placed like them: a second step reuses the compiled one.
    out_shardings = (jax.tree.map(lambda a: a.sharding, state), None)
    state = jax.device_put(state, out_shardings[0])
    step = jax.jit(train.make_train_step(graphdef, tx, TRAIN, setup, seed=seed), out_shardings=out_shardings)
    tokens = jax.random.randint(jax.random.key(0), (4, 9), 0, cfg.vocab_size)
    batch = {
        "inputs": tokens[:, :-1],
        "targets": tokens[:, 1:],
        "loss_mask": jnp.ones((4, 8)),
        "domain": jnp.zeros((4, 8), jnp.int32),
    }
    return graphdef, step, state, batch


@pytest.mark.slow
def test_train_step_updates_router_bias_outside_the_optimizer():
    cfg = ModelConfig(**{**CFG.__dict__, "router_bias_rate": 0.01})
    graphdef, step, state, batch = make_step(cfg)
    forward = jax.jit(lambda params, tokens: nnx.merge(graphdef, params)(tokens)[1])
    aux = forward(state["params"], batch["inputs"])  # no jitter or warmup: routes like the step
    with sharding.use_mesh(one_device_mesh()):
        biases = [
            np.asarray(state["params"]["blocks"][i]["ffn"]["router_bias_E"][...]) for i in cfg.moe_layers
        ]
        old_w = np.asarray(state["params"]["blocks"][0]["ffn"]["w_router_DE"][...])
        for _ in range(2):
            state, _ = step(state, batch)
            biases.append(
                [
                    np.asarray(state["params"]["blocks"][i]["ffn"]["router_bias_E"][...])
                    for i in cfg.moe_layers
                ]
            )
    for n in range(len(cfg.moe_layers)):
        load = np.asarray(aux["moe"]["load_E"][n])
        np.testing.assert_allclose(biases[-2][n], biases[n] + 0.01 * np.sign(load.mean() - load), atol=1e-7)
        step_2 = np.abs(biases[-1][n] - biases[-2][n])  # +-rate, or 0 for an expert at exactly the mean
        assert np.all(np.isclose(step_2, 0.01, atol=1e-7) | (step_2 == 0)) and step_2.max() > 0
    new_w = np.asarray(state["params"]["blocks"][0]["ffn"]["w_router_DE"][...])
    assert np.abs(new_w - old_w).max() > 1e-4  # the router itself trained


@pytest.mark.slow
def test_train_step_passes_step_and_rng_for_routing_warmup():
    cfg = ModelConfig(**{**CFG.__dict__, "routing_warmup_steps": 2})
    graphdef, step, state, batch = make_step(cfg)

    @jax.jit
    def eval_loss(params):  # deterministic routing, the train step's loss terms
        logits, _ = nnx.merge(graphdef, params)(batch["inputs"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()

    with sharding.use_mesh(one_device_mesh()):
        at = lambda t: float(step({**state, "step": jnp.int32(t)}, batch)[1]["train/loss"])
        learned = float(eval_loss(state["params"]))
        # t = 0: random routing changes the loss; t >= t_w: the learned routing alone.
        assert abs(at(0) - learned) > 1e-5
        assert at(2) == pytest.approx(learned, rel=1e-6)


def test_default_call_is_deterministic_eval_routing():
    cfg = ModelConfig(**{**CFG.__dict__, "router_jitter": 0.5, "routing_warmup_steps": 10})
    model = init(lambda rngs: Transformer(cfg, rngs=rngs), one_device_mesh())
    tokens = jnp.arange(16).reshape(2, 8)
    with sharding.use_mesh(one_device_mesh()):
        call = nnx.jit(lambda m, t, rng, train: m(t, step=0, rng=rng, train=train)[0], static_argnums=3)
        plain = nnx.jit(lambda m, t: m(t)[0])(model, tokens)
        np.testing.assert_array_equal(
            np.asarray(plain), np.asarray(call(model, tokens, jax.random.key(1), False))
        )
        noisy = call(model, tokens, jax.random.key(1), True)
    assert np.abs(np.asarray(noisy) - np.asarray(plain)).max() > 1e-4


@pytest.mark.slow
def test_routing_noise_follows_the_run_seed():
    cfg = ModelConfig(**{**CFG.__dict__, "routing_warmup_steps": 4})
    losses = {}
    for seed in (0, 0, 1):
        _, step, state, batch = make_step(cfg, seed=seed)
        with sharding.use_mesh(one_device_mesh()):
            losses.setdefault(seed, []).append(float(step(state, batch)[1]["train/loss"]))
    assert losses[0][0] == losses[0][1]  # the same seed repeats its noise
    assert abs(losses[0][0] - losses[1][0]) > 1e-6  # another seed draws other random routing
