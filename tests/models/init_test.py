"""The initial loss is ln(vocab): at init the model predicts ~uniformly, and no token predicts itself.

These use the real initialisers (not `helpers.init`'s numpy fill): the init is what is under test. Before
`layers.embed_std` (2026-12-03) the loss at init was 11.0 at the quickstart size (ln 259
= 5.56) and 21.6-22.0 at d_model 512 (ln 256 = 5.55); now 5.77-5.80 and 5.82-5.83.
"""

import functools
import math

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from configs import quickstart
from mixlab import sharding
from mixlab.data import ByteTokenizer
from mixlab.models import ModelConfig, Transformer
from tests.models.helpers import one_device_mesh


def quickstart_model(arg: str) -> ModelConfig:
    fields = dict(quickstart.get_config(arg).model)
    return ModelConfig.from_dict({**fields, "vocab_size": ByteTokenizer.vocab_size})


# configlib.SIZES["small"] (d_model 512, 8 heads, MLP 2048) on 2 layers instead of 4, vocab 256.
SMALL = dict(vocab_size=256, d_model=512, num_layers=2, num_heads=8, d_ff=2048)
CASES = {
    "quickstart_moe": lambda: quickstart_model("experts=8"),
    "quickstart_dense": lambda: quickstart_model("experts=0"),
    "quickstart_dense_untied": lambda: ModelConfig(
        **{**quickstart_model("experts=0").__dict__, "tie_embeddings": False}
    ),
    "d512_dense": lambda: ModelConfig(**SMALL),
    "d512_moe": lambda: ModelConfig(**{**SMALL, "d_ff": 1024}, num_experts=4, top_k=2),
}


@functools.cache
def init_logits(name: str) -> tuple[ModelConfig, np.ndarray, np.ndarray]:
    """(config, tokens [8, 129], logits [8, 128, V]) of the freshly initialised model on random tokens."""
    cfg = CASES[name]()
    with sharding.use_mesh(one_device_mesh()):
        model = nnx.jit(lambda: Transformer(cfg, rngs=nnx.Rngs(params=0)))()
        tokens = jax.random.randint(jax.random.key(1), (8, 129), 0, cfg.vocab_size)
        logits, _ = nnx.jit(lambda m, t: m(t))(model, tokens[:, :-1])
    return cfg, np.asarray(tokens), np.asarray(logits)


@pytest.mark.parametrize(
    "name",
    [n if n in ("quickstart_moe", "d512_dense") else pytest.param(n, marks=pytest.mark.slow) for n in CASES],
)
def test_initial_loss_is_ln_vocab(name):
    cfg, tokens, logits = init_logits(name)
    loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean())
    # Logits ~N(0, 1/2) cost ~1/4 nat over ln(vocab); measured +3.7% to +5.0%.
    assert loss == pytest.approx(math.log(cfg.vocab_size), rel=0.1)


@pytest.mark.parametrize("name", ["quickstart_moe", "d512_dense"])
def test_no_token_predicts_itself(name):
    """The mechanism of the old excess: with the embedding dominating the residual stream and a tied
    readout, a token's own logit stood ~sqrt(d_model) above the rest, p(next = this token) was 0.99 at
    d_model 128 and 1.00 at 512. Now ~4/vocab: the embedding's share of the stream (which speeds up
    learning) still lifts its own logit by ~1.5, the same at both widths (`layers.embed_std`)."""
    cfg, tokens, logits = init_logits(name)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    p_self = np.take_along_axis(probs, tokens[:, :-1, None], axis=-1).mean()
    assert p_self < 10.0 / cfg.vocab_size  # 0.016 at both sizes
