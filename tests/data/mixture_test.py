"""resolve_mixture: normalisation, registry-ordered (stable) ids, one-line errors naming the culprit."""

import math

import ml_collections
import pytest

from mixlab.data import DOMAINS, Mixture, resolve_mixture

SIX = ("text", "code", "code_text", "math", "math_traces", "code_math")


def test_normalises_in_registry_order_with_zeros():
    m = resolve_mixture({"math": 2.0, "text": 0.0, "code": 6.0}, domains=SIX)
    assert m == Mixture(names=SIX, weights=(0.0, 0.75, 0.0, 0.25, 0.0, 0.0))
    assert m.active == ("code", "math")
    assert math.isclose(sum(m.weights), 1.0)
    assert m.id("math") == 3


def test_names_are_the_corpus_registry_whatever_the_dict():
    a = resolve_mixture({"text": 0.5, "code": 0.5})
    b = resolve_mixture({"code": 1.0})
    assert a.names == b.names == tuple(DOMAINS)


def test_domain_ids_stable_across_arms():
    full = resolve_mixture({"text": 0.5, "code": 0.3, "math": 0.2}, domains=SIX)
    no_code = resolve_mixture({"text": 0.5, "math": 0.2}, domains=SIX)
    assert full.names == no_code.names == SIX
    assert no_code.as_dict()["code"] == 0.0
    assert math.isclose(no_code.as_dict()["text"], 0.5 / 0.7)


def test_config_dict_key_order_does_not_change_ids():
    cfg = ml_collections.ConfigDict({"weights": {"text": 0.5, "math": 0.2, "code": 0.3}})
    assert list(cfg.weights) == ["code", "math", "text"]  # ConfigDict sorts its keys ...
    m = resolve_mixture(cfg.weights, domains=SIX)
    assert m.names == SIX and m.id("text") == 0  # ... the ids do not follow


@pytest.mark.parametrize(
    "weights, message",
    [
        ({"text": 1.0, "foo": 1.0}, "data.weights: unknown domain 'foo' (known: text, code, code_text, math"),
        ({"text": 1.0, "code": -1.0}, "data.weights['code'] = -1.0 is negative"),
        ({"text": 0.0, "code": 0}, "data.weights sum to 0; at least one domain needs a positive"),
        ({}, "data.weights is empty"),
        ({"text": "0.5"}, "data.weights['text'] = '0.5' is not a number"),
        ({"math": True}, "data.weights['math'] = True is not a number"),
        ({"code": float("nan")}, "data.weights['code'] = nan is not finite"),
    ],
)
def test_bad_weights(weights, message):
    with pytest.raises(ValueError) as e:
        resolve_mixture(weights, domains=SIX)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
