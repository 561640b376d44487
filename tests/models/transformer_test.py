"""Decoder invariants: causality by gradients, sharded equals unsharded, layer layout, bf16 compute."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mixlab import sharding
from mixlab.models import ModelConfig, Transformer
from mixlab.models.moe import MoE
from tests.models.helpers import init, one_device_mesh

CFG = ModelConfig(
    vocab_size=64,
    d_model=32,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    d_ff=64,
    num_experts=4,
    top_k=2,
    capacity_factor=2.0,
)


def loss(params, graphdef, tokens):
    logits, aux = nnx.merge(graphdef, params)(tokens[:, :-1])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
    return ce + 0.01 * aux["lb_loss"] + 0.001 * aux["z_loss"]


@pytest.mark.parametrize("num_experts, dispatch", [(0, "capacity"), (4, "capacity"), (4, "dropless_blocked")])
def test_causal(num_experts, dispatch):
    cfg = ModelConfig(**{**CFG.__dict__, "num_experts": num_experts, "dispatch": dispatch})
    graphdef, params = nnx.split(init(lambda rngs: Transformer(cfg, rngs=rngs), one_device_mesh()))
    emb = jax.random.normal(jax.random.key(0), (1, 12, cfg.d_model))

    @jax.jit
    def early_output_grad(x_BLD, pos):  # feed embeddings directly to differentiate w.r.t. inputs
        def f(x_BLD):
            m = nnx.merge(graphdef, params)
            for block in m.blocks:
                x_BLD, _ = block(x_BLD, jnp.arange(12)[None])
            return jnp.sum(x_BLD[0, pos])

        return jax.grad(f)(x_BLD)

    for pos in (0, 5):
        g = np.asarray(early_output_grad(emb, pos))
        assert np.all(g[0, pos + 1 :] == 0.0), "later positions influence an earlier output"
        assert np.any(g[0, : pos + 1] != 0.0)


@functools.cache
def run_step(mesh_items: tuple, dispatch: str):
    mesh = sharding.make_mesh(dict(mesh_items)) if mesh_items else one_device_mesh()
    # One layer: the sharding of every layer is the same, and compiling for 8 devices dominates.
    cfg = ModelConfig(**{**CFG.__dict__, "dispatch": dispatch, "num_layers": 1})
    sharding.check_experts_fit_mesh(cfg.num_experts, mesh)
    graphdef, params = nnx.split(init(lambda rngs: Transformer(cfg, rngs=rngs), mesh))
    with sharding.use_mesh(mesh):
        tokens = jax.random.randint(jax.random.key(1), (8, 17), 0, cfg.vocab_size)
        tokens = jax.device_put(tokens, sharding.named(mesh, "act_batch", None))
        value, grads = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, graphdef, tokens)
        return float(value), jax.tree.map(np.asarray, grads), params, mesh


@pytest.mark.parametrize("dispatch", ["capacity", "dropless_blocked"])
@pytest.mark.parametrize(
    "mesh_cfg",
    [
        pytest.param({"data": 8}, marks=pytest.mark.slow),
        {"data": 2, "expert": 4},
        {"fsdp": 2, "tensor": 2, "expert": 2},
    ],
)
def test_sharded_equals_unsharded(mesh_cfg, dispatch):
    assert jax.device_count() == 8
    ref_loss, ref_grads, _, _ = run_step((), dispatch)
    got_loss, got_grads, params, mesh = run_step(tuple(mesh_cfg.items()), dispatch)
    assert got_loss == pytest.approx(ref_loss, rel=1e-5)
    for a, b in zip(jax.tree.leaves(got_grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    w = params["blocks"][0]["ffn"]["w_up_EDF"][...]
    spec = sharding.logical_spec("exp", "embed", "mlp")
    assert w.sharding.spec == spec == jax.sharding.PartitionSpec("expert", "fsdp", "tensor")
    E, D, F = CFG.num_experts, CFG.d_model, CFG.d_ff
    want = (E // mesh.shape["expert"], D // mesh.shape["fsdp"], F // mesh.shape["tensor"])
    assert {s.data.shape for s in w.addressable_shards} == {want}  # each device holds only its part


def test_micro_batch_lb_loss_is_per_data_shard():
    cfg = ModelConfig(**{**CFG.__dict__, "lb_granularity": "micro_batch"})
    layer = init(lambda rngs: MoE(cfg, rngs=rngs), one_device_mesh())
    x = jax.random.normal(jax.random.key(1), (4, 9, cfg.d_model))
    lb = jax.jit(lambda x: nnx.merge(*nnx.split(layer))(x)[1]["lb_loss"])
    halves = [float(lb(x[i : i + 2])) for i in (0, 2)]
    whole = float(lb(x))  # no mesh: one shard, the global batch
    mesh = sharding.make_mesh({"data": 2})
    with sharding.use_mesh(mesh):
        two = float(lb(jax.device_put(x, sharding.named(mesh, "act_batch", None, None))))
    assert two == pytest.approx(np.mean(halves), rel=1e-5)
    assert abs(two - whole) > 1e-4


def test_first_dense_layers_and_moe_every_place_moe_layers():
    cfg = ModelConfig(**{**CFG.__dict__, "num_layers": 6, "first_dense_layers": 1, "moe_every": 2})
    assert cfg.moe_layers == (2, 4)
    assert ModelConfig(**{**CFG.__dict__, "num_layers": 4, "moe_every": 2}).moe_layers == (1, 3)
    assert ModelConfig(**{**CFG.__dict__, "num_layers": 4, "first_dense_layers": 3}).moe_layers == (3,)
    model = init(lambda rngs: Transformer(cfg, rngs=rngs), one_device_mesh())
    with sharding.use_mesh(one_device_mesh()):
        _, aux = nnx.jit(lambda m, t: m(t))(model, jnp.zeros((2, 5), jnp.int32))
    kinds = [type(b.ffn).__name__ for b in model.blocks]
    assert kinds == ["Mlp", "Mlp", "MoE", "Mlp", "MoE", "Mlp"]
    assert model.blocks[0].ffn.w_up_DF[...].shape == (32, 2 * 64)  # dense layers: top_k * d_ff
    assert aux["moe"]["experts_BLK"].shape == (2, 2, 5, 2)  # [n_moe_layers, B, L, K]


@pytest.mark.parametrize(
    "overrides",
    [
        dict(num_experts=0),
        dict(),
        dict(num_shared_experts=2, first_dense_layers=1, tie_embeddings=False),
        dict(router_bias_rate=0.01, moe_every=2),
    ],
)
def test_param_counts_match_the_module(overrides):
    cfg = ModelConfig(**{**CFG.__dict__, **overrides})
    with sharding.use_mesh(one_device_mesh()):
        _, params, _ = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))), nnx.Param, ...)
    assert sum(p.size for p in jax.tree.leaves(params)) == cfg.param_counts()["total"]


@pytest.mark.slow
def test_bfloat16_compute_float32_routing_and_loss():
    cfg = ModelConfig(
        **{**CFG.__dict__, "dtype": "bfloat16", "num_experts": 3, "d_ff": 24, "num_shared_experts": 1}
    )
    E = cfg.num_experts  # 3: no other dim of this model is 3, so router matmuls are recognisable
    graphdef, params = nnx.split(init(lambda rngs: Transformer(cfg, rngs=rngs), one_device_mesh()))
    tokens = jnp.zeros((2, 17), jnp.int32)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    jaxpr = jax.make_jaxpr(jax.value_and_grad(loss), static_argnums=1)(params, graphdef, tokens)
    dots = [e for e in iter_eqns(jaxpr.jaxpr) if e.primitive.name == "dot_general"]
    f32 = [e for e in dots if any(v.aval.dtype == jnp.float32 for v in e.invars)]
    assert len(dots) > 40 and f32
    for e in f32:  # only the router runs in float32
        assert any(E in v.aval.shape for v in e.invars), [v.aval for v in e.invars]
    bf16 = [e for e in dots if e not in f32]
    assert all(v.aval.dtype == jnp.bfloat16 for e in bf16 for v in e.invars)
    logits, aux = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))(params, tokens)
    assert logits.dtype == aux["lb_loss"].dtype == aux["moe"]["gates_BLK"].dtype == jnp.float32
    f32_cfg = ModelConfig(**{**cfg.__dict__, "dtype": "float32"})
    f32_graphdef, f32_params = nnx.split(
        init(lambda rngs: Transformer(f32_cfg, rngs=rngs), one_device_mesh())
    )
    tokens = jax.random.randint(jax.random.key(1), (2, 17), 0, cfg.vocab_size)
    jit_loss = jax.jit(loss, static_argnums=1)
    bf16_loss, f32_loss = jit_loss(params, graphdef, tokens), jit_loss(f32_params, f32_graphdef, tokens)
    assert float(bf16_loss) == pytest.approx(float(f32_loss), rel=2e-2)


def iter_eqns(jaxpr):
    for e in jaxpr.eqns:
        yield e
        for p in e.params.values():
            for sub in p if isinstance(p, tuple | list) else (p,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    yield from iter_eqns(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    yield from iter_eqns(sub)
