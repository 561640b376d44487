"""Expert-parallel dropless dispatch (all_to_all over `expert`) equals gathering the experts' weights:
outputs and gradients on 8 fake devices, with the expert weights split and fewer bytes moved."""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mixlab import sharding
from mixlab.models import ModelConfig, expert_parallel
from mixlab.models.dropless import blocked_local
from mixlab.models.moe import MoE
from tests.models.helpers import init

CFG = ModelConfig(vocab_size=32, d_model=16, num_layers=1, num_heads=2, d_ff=24, num_experts=8, top_k=2)
MESHES = [{"expert": 8}, {"data": 2, "expert": 4}, {"fsdp": 2, "expert": 4}]
KERNELS = ["dropless_blocked", "dropless_ragged"]


def layer_grads(mesh_cfg: dict, kernel: str, comm: str, cfg: ModelConfig = CFG, x_shape=(8, 12)):
    """(y, loss, grads of x and of every parameter) of one MoE layer on `mesh_cfg`, numpy."""
    cfg = ModelConfig(**{**cfg.__dict__, "dispatch": kernel, "dropless_comm": comm})
    mesh = sharding.make_mesh(mesh_cfg)
    layer = init(lambda rngs: MoE(cfg, rngs=rngs), mesh, seed=3)
    graphdef, params = nnx.split(layer)
    x = jax.random.normal(jax.random.key(1), (*x_shape, cfg.d_model))

    def loss(params, x):
        y, aux = nnx.merge(graphdef, params)(x)
        return jnp.sum(jnp.sin(y)) + aux["lb_loss"], y

    with sharding.use_mesh(mesh):
        x = jax.device_put(x, sharding.named(mesh, "act_batch", None, None))
        (value, y), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)
    return np.asarray(y), float(value), jax.tree.map(np.asarray, grads)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mesh_cfg", MESHES, ids=lambda m: "_".join(f"{k}{v}" for k, v in m.items()))
def test_all_to_all_equals_gathered_weights(mesh_cfg, kernel):
    y_a, v_a, g_a = layer_grads(mesh_cfg, kernel, "all_to_all")
    y_g, v_g, g_g = layer_grads(mesh_cfg, kernel, "gather_weights")
    np.testing.assert_allclose(y_a, y_g, atol=1e-5, rtol=1e-5)
    assert v_a == pytest.approx(v_g, rel=1e-5)
    for a, b in zip(jax.tree.leaves(g_a), jax.tree.leaves(g_g), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    assert np.abs(y_a).max() > 0.1  # the experts ran


@pytest.mark.slow
def test_all_to_all_equals_one_device():
    """Against no mesh at all (the reference the gathered path is tested against in moe_test)."""
    y_a, _, g_a = layer_grads({"expert": 8}, "dropless_blocked", "all_to_all")
    y_1, _, g_1 = layer_grads({"data": 1}, "dropless_blocked", "all_to_all")
    np.testing.assert_allclose(y_a, y_1, atol=1e-5, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_a), jax.tree.leaves(g_1), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_all_tokens_to_one_expert_drop_nothing():
    """The worst case the per-destination capacity C = T_local * min(K, E/X) is sized for: every
    token's two experts on one shard."""
    cfg = ModelConfig(**{**CFG.__dict__, "num_experts": 16})
    mesh = sharding.make_mesh({"expert": 8})
    x_TD = jax.random.normal(jax.random.key(2), (16, cfg.d_model))
    experts_TK = jnp.tile(jnp.array([[4, 5]]), (16, 1))  # experts 4, 5 both live on shard 2
    gates_TK = jnp.full((16, 2), 0.5)
    k = jax.random.split(jax.random.key(3), 3)
    w = tuple(
        jax.random.normal(k[i], s) * 0.3 for i, s in enumerate([(16, 16, 24), (16, 16, 24), (16, 24, 16)])
    )
    with sharding.use_mesh(mesh):
        got = jax.jit(lambda *a: expert_parallel.all_to_all_ffn(*a, "dropless_blocked"))(
            x_TD, experts_TK, gates_TK, w
        )
    want = blocked_local(x_TD, experts_TK, gates_TK, w, block=8)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-5)


def test_send_slots_are_destination_blocks():
    experts_TK = jnp.array([[0, 3], [2, 1], [3, 0]])  # 4 experts on 2 shards: 0,1 -> 0; 2,3 -> 1
    slot_A, C = expert_parallel.send_slots(experts_TK, 2, 2)
    assert C == 6  # 3 tokens * min(K = 2, E/X = 2)
    # shard 0 gets assignments 0, 3, 5 (token order), shard 1 gets 1, 2, 4: slots 6, 7, 8.
    np.testing.assert_array_equal(np.asarray(slot_A), [0, 6, 7, 1, 8, 2])


@functools.cache
def compiled_hlo(comm: str) -> str:
    """The train-step-like HLO (forward + backward) of one wide MoE layer on expert=8."""
    cfg = ModelConfig(**{**CFG.__dict__, "d_ff": 256, "dispatch": "dropless_blocked", "dropless_comm": comm})
    mesh = sharding.make_mesh({"expert": 8})
    layer = init(lambda rngs: MoE(cfg, rngs=rngs), mesh)
    graphdef, params = nnx.split(layer)

    def loss(params, x):
        return jnp.sum(nnx.merge(graphdef, params)(x)[0] ** 2)

    with sharding.use_mesh(mesh):
        x = jax.device_put(jnp.ones((8, 8, cfg.d_model)), sharding.named(mesh, "act_batch", None, None))
        return jax.jit(jax.grad(loss)).lower(params, x).compile().as_text()


def collective_bytes(hlo: str) -> int:
    """Bytes of the results of every all-gather / all-to-all / all-reduce / reduce-scatter in the HLO."""
    total, sizes = 0, {"f32": 4, "s32": 4, "bf16": 2, "u32": 4, "pred": 1}
    op = re.compile(r" = (.*?) (?:all-gather|all-to-all|all-reduce|reduce-scatter)(?:-start)?\(")
    for line in hlo.splitlines():
        if m := op.search(line):
            for dt, dims in re.findall(r"([a-z0-9]+)\[([0-9,]*)\]", m.group(1)):
                total += sizes[dt] * math.prod(int(d) for d in dims.split(",") if d)
    return total


@pytest.mark.slow
def test_expert_weights_are_partitioned_and_fewer_bytes_move():
    mesh = sharding.make_mesh({"expert": 8})
    cfg = ModelConfig(**{**CFG.__dict__, "dispatch": "dropless_blocked"})
    layer = init(lambda rngs: MoE(cfg, rngs=rngs), mesh)
    w = layer.w_gate_EDF[...]
    assert w.sharding.spec == jax.sharding.PartitionSpec("expert", "fsdp", "tensor")
    assert {s.data.shape for s in w.addressable_shards} == {(1, cfg.d_model, cfg.d_ff)}
    tuple_op = "%a = (f32[2,3]{1,0}, /*index=1*/s32[4]{0}) all-to-all(%b, %c), channel_id=1"
    assert collective_bytes(tuple_op + "\n%d = f32[5]{0} add(%e, %f)") == 24 + 16  # the counter itself
    a2a, gathered = compiled_hlo("all_to_all"), compiled_hlo("gather_weights")
    assert "all-to-all" in a2a and "all-to-all" not in gathered
    assert 0 < collective_bytes(a2a) < collective_bytes(gathered)
