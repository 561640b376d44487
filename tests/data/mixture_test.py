"""resolve_mixture: normalisation, stable domain ids, and one-line errors naming the culprit."""

import math

import ml_collections
import pytest

from mixlab.data import Mixture, resolve_mixture


def test_normalises_keeps_zeros_and_order():
    m = resolve_mixture({"math": 2.0, "text": 0.0, "code": 6.0})
    assert m == Mixture(names=("math", "text", "code"), weights=(0.25, 0.0, 0.75))
    assert m.active == ("math", "code")
    assert math.isclose(sum(m.weights), 1.0)


def test_domain_ids_stable_across_arms():
    full = resolve_mixture({"text": 0.5, "code": 0.3, "math": 0.2})
    no_code = resolve_mixture({"text": 0.5, "code": 0, "math": 0.2})
    assert full.names == no_code.names
    assert no_code.as_dict()["code"] == 0.0
    assert math.isclose(no_code.as_dict()["text"], 0.5 / 0.7)


def test_config_dict_iterates_in_sorted_key_order():
    cfg = ml_collections.ConfigDict({"weights": {"text": 0.5, "code": 0.3, "math": 0.2}})
    assert resolve_mixture(cfg.weights).names == ("code", "math", "text")


@pytest.mark.parametrize(
    "weights, message",
    [
        ({"text": 1.0, "foo": 1.0}, "data.weights: unknown domain 'foo' (known: text, code, math)"),
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
        resolve_mixture(weights)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
