import pytest

from mixlab import configlib


def test_parse_arg_types_and_defaults():
    arg = configlib.parse_arg("size=nano,experts=4,runlocal", size="micro", experts=8, lr=1e-3)
    assert (arg.size, arg.experts, arg.lr, arg.runlocal) == ("nano", 4, 1e-3, True)
    assert configlib.parse_arg(None, size="micro").runlocal is False


@pytest.mark.parametrize(
    "arg, match",
    [
        ("colour=red", "unknown key 'colour'"),
        ("experts=many", "experts='many': expected int"),
        ("experts", "needs"),
    ],
)
def test_parse_arg_errors_name_the_key(arg, match):
    with pytest.raises(ValueError, match=match):
        configlib.parse_arg(arg, experts=8)


def test_durations():
    assert configlib.to_steps(100, total_steps=None, tokens_per_step=10) == 100
    assert configlib.to_steps({"tokens": 1001}, total_steps=None, tokens_per_step=10) == 101
    assert configlib.to_steps({"percent": 5}, total_steps=300, tokens_per_step=10) == 15
    with pytest.raises(ValueError, match="exactly one"):
        configlib.to_steps({"steps": 1, "tokens": 2}, total_steps=None, tokens_per_step=1)


def test_moe_size_matches_dense_active_params():
    from mixlab.models import ModelConfig

    dense = ModelConfig(vocab_size=259, **configlib.model_size("micro"))
    moe = ModelConfig(vocab_size=259, **configlib.model_size("micro", num_experts=8, top_k=2))
    assert dense.param_counts()["active"] == moe.param_counts()["active"] - 4 * 128 * 8  # + router
