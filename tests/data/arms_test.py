"""Ablation arms: each intervention's weights by hand, budgets, parsing, and errors naming the culprit."""

import math

import pytest

from mixlab.data import arms
from mixlab.data.arms import Add, Remove, Replace

# The six-domain registry of the issue, passed explicitly so these tests do not depend on the corpus.
SIX = ("text", "code", "code_text", "math", "math_traces", "code_math")
BASE = {"text": 0.5, "code": 0.2, "code_text": 0.1, "math": 0.2}


def _weights(arm, base=BASE):
    r = arms.resolve_arm(base, arm, domains=SIX)
    return {n: w for n, w in r.mixture.as_dict().items() if w}, r


def _close(got, want):
    assert set(got) == set(want), (got, want)
    for n in want:
        assert math.isclose(got[n], want[n], rel_tol=1e-12), (n, got[n], want[n])


def test_base_arm_is_the_normalised_base():
    for spec in (None, "", "base", "full", []):
        got, r = _weights(spec)
        _close(got, BASE)
        assert r.budget_scale == 1.0 and r.label == "base"


def test_remove_proportional_spreads_the_share_over_the_rest():
    got, r = _weights("remove:code")  # the paper's policy: 0.2 spread over 0.8
    _close(got, {"text": 0.5 / 0.8, "code_text": 0.1 / 0.8, "math": 0.2 / 0.8})
    assert r.budget_scale == 1.0 and r.label == "remove:code:proportional"
    assert got["math"] > BASE["math"]  # proportional removal's confound: math gains tokens


def test_remove_fill_gives_the_share_to_one_domain():
    got, r = _weights("remove:code:fill:text")
    _close(got, {"text": 0.7, "code_text": 0.1, "math": 0.2})  # math tokens unchanged
    assert r.budget_scale == 1.0
    got, _ = _weights("remove:code:fill:math_traces")  # a zero-weight domain may be filled
    _close(got, {"text": 0.5, "math_traces": 0.2, "code_text": 0.1, "math": 0.2})


def test_remove_hold_keeps_absolute_tokens_and_shrinks_the_budget():
    got, r = _weights("remove:code:hold")
    assert math.isclose(r.budget_scale, 0.8)
    for name in ("text", "code_text", "math"):  # tokens = share x budget are unchanged
        assert math.isclose(got[name] * r.budget_scale, BASE[name])


def test_replace_moves_exactly_the_source_tokens():
    got, r = _weights("replace:math:math_traces")  # the scaffold arm
    _close(got, {"text": 0.5, "code": 0.2, "code_text": 0.1, "math_traces": 0.2})
    assert r.budget_scale == 1.0


def test_scaffold_arm_keeps_the_math_budget():
    math_family = ("math", "math_traces")
    for base in (BASE, {"text": 3, "math": 1}, {"code": 1, "math": 2, "code_math": 0.5}):
        before = arms.resolve_arm(base, "", domains=SIX).mixture.as_dict()
        after = arms.resolve_arm(base, ["replace:math:math_traces"], domains=SIX).mixture.as_dict()
        assert math.isclose(sum(after[d] for d in math_family), sum(before[d] for d in math_family))
        assert after["math"] == 0.0
        assert all(after[d] == before[d] for d in SIX if d not in math_family)


def test_add_takes_a_share_and_scales_the_rest():
    got, r = _weights("add:code_math:0.1")
    _close(got, {"code_math": 0.1, **{n: w * 0.9 for n, w in BASE.items()}})
    assert r.budget_scale == 1.0


def test_interventions_apply_in_order():
    got, r = _weights("remove:code:fill:text+replace:math:math_traces")
    _close(got, {"text": 0.7, "code_text": 0.1, "math_traces": 0.2})
    assert r.label == "remove:code:fill:text+replace:math:math_traces"
    same, _ = _weights(["remove:code:fill:text", "replace:math:math_traces"])
    _close(same, got)
    hold_then_add, r = _weights("remove:code:hold+add:code_math:0.5")
    assert math.isclose(r.budget_scale, 0.8) and math.isclose(hold_then_add["code_math"], 0.5)


def test_python_api_equals_strings():
    api = arms.resolve_arm(BASE, [Remove("code", "fill:text"), Replace("math", "math_traces")], domains=SIX)
    text = arms.resolve_arm(BASE, "remove:code:fill:text+replace:math:math_traces", domains=SIX)
    assert api == text
    assert arms.parse_arm(Add("code_math", 0.25), domains=SIX) == (Add("code_math", 0.25),)


def test_ids_do_not_move_between_arms():
    names = {
        arms.resolve_arm(BASE, a, domains=SIX).mixture.names for a in ("", "remove:code", "add:code_math:.1")
    }
    assert names == {SIX}


def test_schedule_stages_each_get_the_arm():
    stages = [{"text": 0.9, "code": 0.1}, {"text": 0.5, "math": 0.5}]
    r = arms.resolve_arm(stages, "remove:code:fill:text", domains=SIX)
    assert [m.as_dict()["text"] for m in r.mixtures] == [1.0, 0.5]  # code absent in stage 2: no-op there
    assert [m.as_dict() for m in r.base] == [
        arms.resolve_arm(s, "", domains=SIX).mixture.as_dict() for s in stages
    ]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("drop:code", "data.arm 'drop:code': expected remove:D"),
        ("remove", "data.arm 'remove': expected"),
        ("remove:web", "data.arm 'remove:web': unknown domain 'web'"),
        ("remove:code:spread", "unknown renorm 'spread'"),
        ("remove:code:fill", "unknown renorm 'fill'"),
        ("remove:code:fill:web", "fill target: unknown domain 'web'"),
        ("remove:code:fill:code", "cannot fill the removed domain itself"),
        ("replace:math", "data.arm 'replace:math': expected"),
        ("replace:math:math", "replaces a domain with itself"),
        ("replace:math:proofs", "unknown domain 'proofs'"),
        (
            "replace:math:text",
            "'text' already has weight; replace moves 'math''s tokens into an empty domain",
        ),
        ("replace:math_traces:math", "'math_traces' has no weight in the base mixture"),
        ("remove:code_math", "'code_math' has no weight in the base mixture"),
        ("add:code_math:x", "share 'x' is not a number"),
        ("add:code_math:1.5", "share 1.5 must be strictly between 0 and 1"),
        ("add:code_math:0", "share 0 must be strictly between 0 and 1"),
        ("add:text:0.1", "'text' already has weight; add gives a new domain a share"),
        (
            "remove:text+remove:code+remove:code_text+remove:math",
            "removing 'math' leaves no domain with weight",
        ),
        (3, "data.arm: 3 is not a string"),
    ],
)
def test_bad_arms(spec, message):
    with pytest.raises(ValueError) as e:
        arms.resolve_arm(BASE, [spec] if not isinstance(spec, str) else spec, domains=SIX)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_hold_with_a_schedule_is_an_error():
    with pytest.raises(ValueError, match="hold changes the budget; not with a schedule"):
        arms.resolve_arm([BASE, {"text": 1, "code": 1}], "remove:code:hold", domains=SIX)


def test_remove_keep_holds_one_domain_and_scales_the_rest():
    base = {"text": 0.4, "code": 0.2, "math": 0.2, "code_text": 0.2}
    out = arms.resolve_arm(base, "remove:code:keep:math").mixture.as_dict()
    # math keeps 0.2; text and code_text share code's 0.2 in proportion 0.4 : 0.2.
    assert out["math"] == pytest.approx(0.2)
    assert out["text"] == pytest.approx(0.4 + 0.2 * 2 / 3)
    assert out["code_text"] == pytest.approx(0.2 + 0.2 / 3)
    assert out.get("code", 0.0) == 0.0
    with pytest.raises(ValueError, match="keep target"):
        arms.parse_arm("remove:code:keep:poetry")
