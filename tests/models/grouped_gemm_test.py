"""The start-up choice of the grouped-matmul backend: HLO FLOP counting, verdicts, the auto kernel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixlab import sharding
from mixlab.models import dispatch, dropless, grouped_gemm

HLO = """HloModule m
fused_computation {
  p0 = f32[64,32]{1,0} parameter(0)
}
ENTRY main {
  %x = f32[64,32]{1,0} parameter(0)
  %w = f32[32,16]{1,0} parameter(1)
  %d = f32[64,16]{1,0} dot(%x, %w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %g = f32[64,16]{1,0} custom-call(f32[64,32]{1,0} %x, %w), custom_call_target="__cublas$gemm", {CFG}
  %r = f32[64,16]{1,0} ragged-dot(%x, %w, %s)
  ROOT %k = f32[64,16]{1,0} custom-call(%x), custom_call_target="mosaic_gpu"
}
""".replace("{CFG}", 'backend_config={"dot_dimension_numbers":{"lhs_contracting_dimensions":["1"]}}')


def test_inspect_hlo_counts_dots_and_gemm_calls():
    info = grouped_gemm.inspect_hlo(HLO)
    assert info["matmul_flops"] == 2 * (2 * 64 * 16 * 32)  # the dot and the cuBLAS GEMM
    assert info["ragged_ops"] == 1
    assert info["custom_calls"] == ["__cublas$gemm", "mosaic_gpu"]


@pytest.mark.parametrize(
    "info, want",
    [
        (
            dict(matmul_flops_over_ragged=8.0, cost_flops_over_ragged=None, ragged_ops=0, custom_calls=[]),
            "dense",
        ),
        (
            dict(matmul_flops_over_ragged=0.0, cost_flops_over_ragged=7.9, ragged_ops=1, custom_calls=[]),
            "dense",
        ),
        (
            dict(matmul_flops_over_ragged=0.0, cost_flops_over_ragged=1.0, ragged_ops=1, custom_calls=[]),
            "ragged_op",
        ),
        (
            dict(
                matmul_flops_over_ragged=0.0,
                cost_flops_over_ragged=None,
                ragged_ops=0,
                custom_calls=["triton"],
            ),
            "custom_call",
        ),
    ],
)
def test_verdict(info, want):
    assert grouped_gemm.verdict({"matmul_flops": 1.0, **info}, groups=8) == want


def test_auto_kernel_per_backend(monkeypatch):
    assert grouped_gemm.auto_kernel("cpu") == "dropless_blocked"  # never probed: ragged_dot is slow there
    assert grouped_gemm.ragged_backend("cpu") == "jax"
    assert dispatch.resolve_dispatch("auto") == "dropless_blocked"
    cases = [  # (probe's verdict, tokamax installed) -> (auto kernel, grouped-matmul backend)
        (("ragged_op", True), ("dropless_ragged", "jax")),
        (("dense", True), ("dropless_ragged", "tokamax")),
        (("dense", False), ("dropless_blocked", "none")),
    ]
    real = grouped_gemm._tokamax_ragged_dot
    for (lowering, installed), want in cases:
        monkeypatch.setattr(grouped_gemm, "probe", lambda backend, lowering=lowering: lowering)
        monkeypatch.setattr(grouped_gemm, "_tokamax_ragged_dot", real if installed else lambda: None)
        assert (grouped_gemm.auto_kernel("gpu"), grouped_gemm.ragged_backend("gpu")) == want
    assert grouped_gemm.describe("dropless_ragged") == "dropless_ragged"
    assert grouped_gemm.describe("auto") == "auto -> dropless_blocked (CPU)"


def test_tokamax_ragged_dot_equals_jax_in_the_dropless_path(monkeypatch):
    """Where jax.lax.ragged_dot lowers dense, dropless_ragged runs tokamax's kernel (the `kernels`
    extra; on CPU its XLA implementation): the same outputs and gradients."""
    from tests.models.dispatch_test import E, weights

    x_TD = jax.random.normal(jax.random.key(0), (12, 8))
    experts_TK = jax.random.randint(jax.random.key(1), (12, 2), 0, E)
    experts_TK = experts_TK.at[:, 1].set((experts_TK[:, 0] + 1) % E)
    gates_TK = jax.random.uniform(jax.random.key(2), (12, 2))

    def grads():
        def loss(x, g, w):
            return jnp.sum(jnp.sin(dropless.ragged_local(x, experts_TK, g, w)))

        return jax.value_and_grad(loss, argnums=(0, 1, 2))(x_TD, gates_TK, weights())

    want = grads()
    monkeypatch.setattr(grouped_gemm, "ragged_backend", lambda backend=None: "tokamax")
    got = grads()
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


def test_probe_compiles_inside_a_trace_under_a_mesh():
    """`auto` resolves while a model is traced under its mesh: the probe must compile there too. On
    XLA:CPU ragged_dot lowers to a dense dot over every group (benchmarks/ragged_dot.py)."""
    grouped_gemm.probe.cache_clear()
    seen = []
    with sharding.use_mesh(sharding.make_mesh({"data": 2, "expert": 4})):

        @jax.jit
        def f(x):
            seen.append(grouped_gemm.probe("cpu"))
            return x * 2

        f(jnp.ones(8))
    assert seen == ["dense"]
