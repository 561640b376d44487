"""Bad model configs fail at construction (or at the mesh check), one clear error naming field and value."""

import jax
import pytest

from mixlab import sharding
from mixlab.models import ModelConfig

BASE = dict(vocab_size=64, d_model=32, num_layers=4, num_heads=4, d_ff=64, num_experts=4, top_k=2)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(top_k=5), r"model.top_k = 5: must be in \[1, num_experts = 4\]"),
        (dict(score_fn="relu"), r"model.score_fn = 'relu': unknown \(known: softmax, sigmoid\)"),
        (dict(dispatch="megablox"), r"model.dispatch = 'megablox': unknown \(known: capacity, .*auto\)"),
        (dict(lb_granularity="batch"), r"model.lb_granularity = 'batch': unknown"),
        (dict(first_dense_layers=4), r"model.first_dense_layers = 4: with moe_every = 1 leaves no MoE layer"),
        (dict(first_dense_layers=5), r"model.first_dense_layers = 5: must be in \[0, num_layers = 4\]"),
        (dict(moe_every=0), r"model.moe_every = 0: must be >= 1"),
        (dict(num_shared_experts=-1), r"model.num_shared_experts = -1: must be >= 0"),
        (dict(router_jitter=1.5), r"model.router_jitter = 1.5: must be in \[0, 1\)"),
        (dict(router_bias_rate=-0.1), r"model.router_bias_rate = -0.1: must be >= 0"),
        (dict(capacity_factor=0.0), r"model.capacity_factor = 0.0: must be positive"),
        (dict(num_experts=-2), r"model.num_experts = -2: must be >= 0"),
        (dict(dtype="float16"), r"model.dtype = 'float16': must be float32 or bfloat16"),
        (dict(num_kv_heads=3), r"model.num_kv_heads = 3: must divide num_heads = 4"),
    ],
)
def test_bad_config_names_field_and_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**BASE, **overrides})


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['experts'\]"):
        ModelConfig.from_dict({**BASE, "experts": 8})


def test_experts_must_divide_over_the_expert_axis():
    mesh = sharding.make_mesh({"data": 2, "expert": 4})
    sharding.check_experts_fit_mesh(8, mesh)
    sharding.check_experts_fit_mesh(0, mesh)  # dense: expert = data
    with pytest.raises(
        ValueError, match=r"model.num_experts = 6 is not divisible by the mesh's expert axis \(4\)"
    ):
        sharding.check_experts_fit_mesh(6, mesh)


def test_mesh_larger_than_devices():
    assert jax.device_count() == 8
    with pytest.raises(ValueError, match="needs 16 devices but 8 are present"):
        sharding.make_mesh({"data": 2, "expert": 8})


def test_moe_layout_and_active_parameters():
    moe = ModelConfig(**BASE)
    dense = ModelConfig(**{**BASE, "num_experts": 0, "d_ff": 128})
    # top-2 of experts with d_ff 64 = the dense d_ff 128, plus the router (32 x 4 per layer).
    assert moe.param_counts()["active"] == dense.param_counts()["active"] + 4 * 32 * 4
    mixed = ModelConfig(**{**BASE, "first_dense_layers": 1, "moe_every": 2, "num_shared_experts": 1})
    assert mixed.moe_layers == (2,) and mixed.dense_d_ff == 128 and mixed.shared_ff == 64
