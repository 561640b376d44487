"""The redundancy-test forward: unmasked it is the model's own forward; masked it reroutes to ranks
r+1..r+K."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mixlab import sharding
from mixlab.analysis import masking
from mixlab.models import ModelConfig, Transformer
from tests.models.helpers import init, one_device_mesh

CFG = ModelConfig(
    vocab_size=64, d_model=32, num_layers=3, num_heads=4, d_ff=32, num_experts=6, top_k=2,
    dispatch="dropless_blocked",
)  # fmt: skip
VARIANTS = [
    {},
    # Shared expert, a dense first layer, untied output, sigmoid scores with the aux-loss-free bias.
    dict(num_shared_experts=1, first_dense_layers=1, tie_embeddings=False, score_fn="sigmoid",
         router_bias_rate=0.01),
]  # fmt: skip


@pytest.mark.parametrize("overrides", VARIANTS)
def test_unmasked_forward_equals_the_model(overrides):
    cfg = dataclasses.replace(CFG, **overrides)
    model = init(lambda rngs: Transformer(cfg, rngs=rngs), one_device_mesh())
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 64, (2, 12)), jnp.int32)
    with sharding.use_mesh(one_device_mesh()):
        (logits, aux), (ours, used) = nnx.jit(lambda m, t: (m(t), masking.forward(m, t, 0)))(model, tokens)
    np.testing.assert_array_equal(used, aux["moe"]["experts_BLK"])
    np.testing.assert_allclose(ours, logits, rtol=1e-5, atol=1e-5)


def test_masking_reroutes_to_the_next_ranks():
    model = init(lambda rngs: Transformer(CFG, rngs=rngs), one_device_mesh())
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, 64, (2, 12)), jnp.int32)

    def run(m, t):  # one compilation for the three forwards
        return m(t), masking.forward(m, t, 1), masking.forward(m, t, 2)

    with sharding.use_mesh(one_device_mesh()):
        (logits0, aux), (logits1, used1), (_, used2) = nnx.jit(run)(model, tokens)
    experts = np.asarray(aux["moe"]["experts_BLK"])
    # Layer 0 routes the same inputs either way: its old second choice is now the first.
    np.testing.assert_array_equal(used1[0, ..., 0], experts[0, ..., 1])
    assert not np.any(used2[0][..., :, None] == experts[0][..., None, :])  # r = K: disjoint sets
    assert not np.allclose(logits0, logits1)


def test_scores_and_gates_of_masked_choice():
    scores = jnp.array([[[0.1, 0.4, 0.2, 0.3]]])
    experts, gates = masking.masked_choice(scores, scores, top_k=2, mask_top=1, norm_topk_prob=True)
    np.testing.assert_array_equal(experts[0, 0], [3, 2])
    np.testing.assert_allclose(gates[0, 0], [0.6, 0.4], rtol=1e-6)
    # A selection bias changes which experts are chosen, not their gates.
    bias = jnp.array([[[0.0, 0.0, 0.5, 0.0]]])
    experts, gates = masking.masked_choice(scores, scores + bias, top_k=2, mask_top=1, norm_topk_prob=False)
    np.testing.assert_array_equal(experts[0, 0], [1, 3])
    np.testing.assert_allclose(gates[0, 0], [0.4, 0.3], rtol=1e-6)


def test_too_many_masked_experts_is_an_error():
    model = init(lambda rngs: Transformer(CFG, rngs=rngs), one_device_mesh())
    with sharding.use_mesh(one_device_mesh()), pytest.raises(ValueError, match="mask_top = 5"):
        jax.eval_shape(lambda: masking.forward(model, jnp.zeros((1, 4), jnp.int32), 5))
