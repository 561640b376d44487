"""Dispatch internals: capacity priority, the two capacity implementations, blocked loops' edge cases."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixlab.models import dispatch, dropless

D, F, E = 8, 12, 4


def weights(key=0):
    k = jax.random.split(jax.random.key(key), 3)
    return (
        jax.random.normal(k[0], (E, D, F)) * D**-0.5,
        jax.random.normal(k[1], (E, D, F)) * D**-0.5,
        jax.random.normal(k[2], (E, F, D)) * F**-0.5,
    )


def test_capacity_priority_first_choices_win():
    # Three tokens all pick expert 0 first and expert 1 second; capacity 2 per expert.
    experts = jnp.array([[[0, 1], [0, 1], [0, 1]]])
    gates = jnp.full((1, 3, 2), 0.5)
    dispatch_mask, _, kept = dispatch.capacity_dispatch(experts, gates, 2, 2)
    # First choices of tokens 0, 1 fit; token 2's first choice is dropped; second choices of 0, 1 fit.
    np.testing.assert_array_equal(np.asarray(kept[0]), [[True, True], [True, True], [False, False]])
    assert np.asarray(dispatch_mask).sum() == 4


@pytest.mark.slow
def test_capacity_gather_equals_einsum():
    """The CPU/GPU gather implementation and the TPU one-hot einsums: same slots, drops, gradients."""
    x = jax.random.normal(jax.random.key(1), (3, 10, D))
    experts = jax.random.randint(jax.random.key(2), (3, 10, 2), 0, E)
    experts = experts.at[..., 1].set((experts[..., 0] + 1) % E)  # two distinct experts per token
    gates = jax.random.uniform(jax.random.key(3), (3, 10, 2))

    def run(impl):
        def f(x, gates, w):
            y, kept = dispatch.capacity_ffn(x, experts, gates, w, 4, impl)
            return jnp.sum(jnp.sin(y)), kept

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(x, gates, weights())

    (v1, kept1), g1 = run("einsum")
    (v2, kept2), g2 = run("gather")
    assert 0 < np.asarray(kept1).mean() < 1  # 60 assignments, 48 slots: some dropped
    np.testing.assert_array_equal(np.asarray(kept1), np.asarray(kept2))
    assert float(v1) == pytest.approx(float(v2), rel=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4)


FIRST_CHOICES = {  # 18 tokens; each token's second choice is (first + 2) % 4; blocks of 4 rows
    "two_experts_take_all": [0] * 18,  # experts 1, 3 empty; 18 rows each: 4 full blocks + 2 rows
    "some_exact_blocks": [0] * 8 + [1] * 8 + [2] * 2,  # experts 1, 3: 8 rows, exactly 2 blocks
    "last_expert_spills_into_slack": [3] * 18,
    "random": np.random.default_rng(0).integers(0, E, 18).tolist(),
}


@functools.cache
def blocked_and_ragged():
    def loss(fn):
        return lambda x, e, g, w: jnp.sum(jnp.sin(fn(x, e, g, w)))

    blocked = loss(lambda *a: dropless.blocked_local(*a, block=4))
    grad = functools.partial(jax.value_and_grad, argnums=(0, 2, 3))
    return jax.jit(grad(blocked)), jax.jit(grad(loss(dropless.ragged_local)))


@pytest.mark.parametrize("case", list(FIRST_CHOICES))
def test_blocked_equals_ragged(case):
    first = np.array(FIRST_CHOICES[case])
    experts_TK = jnp.asarray(np.stack([first, (first + 2) % E], -1), jnp.int32)
    x_TD = jax.random.normal(jax.random.key(4), (18, D))
    gates_TK = jax.random.uniform(jax.random.key(5), (18, 2))
    blocked, ragged = blocked_and_ragged()  # compiled once for all cases: the routing is an input
    (vb, gb), (vr, gr) = (f(x_TD, experts_TK, gates_TK, weights()) for f in (blocked, ragged))
    assert float(vb) == pytest.approx(float(vr), rel=1e-5)
    for a, b in zip(jax.tree.leaves(gb), jax.tree.leaves(gr), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4)


def test_sort_by_expert_positions():
    experts_TK = jnp.array([[2, 0], [0, 1], [2, 1]])
    pos_A, count_E, start_E = dropless.sort_by_expert(experts_TK, 4)
    # Sorted rows: expert 0 (assignments 1, 2), expert 1 (3, 5), expert 2 (0, 4), expert 3 none.
    np.testing.assert_array_equal(np.asarray(count_E), [2, 2, 2, 0])
    np.testing.assert_array_equal(np.asarray(start_E), [0, 2, 4, 6])
    np.testing.assert_array_equal(np.asarray(pos_A), [4, 0, 1, 2, 5, 3])


def test_group_tokens_and_block_rows():
    x = jnp.zeros((4, 6, 2))
    assert dispatch.group_tokens(x, 0).shape == (4, 6, 2)
    assert dispatch.group_tokens(x, 3).shape == (8, 3, 2)
    assert dispatch.group_tokens(x, 12).shape == (2, 12, 2)
    with pytest.raises(ValueError, match="moe_group_size = 4"):
        dispatch.group_tokens(x, 4)
    assert dropless.blocked_rows(4096, 2, 8) == 256  # a quarter of the mean load of 1024 rows
    assert dropless.blocked_rows(30, 2, 4) == 64
    assert dispatch.resolve_dispatch("auto") == "dropless_blocked"  # tests run on CPU
    assert dispatch.resolve_dispatch("capacity") == "capacity"
    assert dispatch.resolve_dispatch("capacity", dropless=True) == "dropless_blocked"
    assert dispatch.resolve_dispatch("dropless_ragged", dropless=True) == "dropless_ragged"


def test_decode_kernel_choice_by_weights_moved():
    assert dispatch.resolve_decode("auto", 2, 2, 16) == "topk"  # 12 experts' weights moved <= 16 read
    assert dispatch.resolve_decode("auto", 3, 2, 16) == "all_experts"
    assert dispatch.resolve_decode("auto", 1, 8, 64) == "topk"
    assert dispatch.resolve_decode("all_experts", 1, 2, 16) == "all_experts"


def test_topk_equals_all_experts():
    """A decode step's two kernels: each token through its own top-k experts, and through all E
    with one capacity slot each (nothing dropped): same outputs and gradients."""
    x_TD = jax.random.normal(jax.random.key(6), (5, D))
    experts_TK = jnp.array([[0, 3], [2, 1], [3, 0], [1, 2], [0, 1]])
    gates_TK = jax.random.uniform(jax.random.key(7), (5, 2))

    def loss(kernel):
        return lambda x, g, w: jnp.sum(jnp.sin(kernel(x, experts_TK, g, w)))

    def all_experts(x, e, g, w):
        return dispatch.capacity_ffn(x[:, None], e[:, None], g[:, None], w, 1, "gather")[0][:, 0]

    grad = functools.partial(jax.value_and_grad, argnums=(0, 1, 2))
    (vt, gt), (va, ga) = (
        jax.jit(grad(loss(k)))(x_TD, gates_TK, weights()) for k in (dispatch.topk_ffn, all_experts)
    )
    assert float(vt) == pytest.approx(float(va), rel=1e-5)
    for a, b in zip(jax.tree.leaves(gt), jax.tree.leaves(ga), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4)
