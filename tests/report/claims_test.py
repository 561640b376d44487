"""The claims' verdicts follow the synthetic data: supported, contradicted, inconclusive, not tested."""

import pytest

from mixlab.report import build
from tests.report import synthetic

# (claim, the arm whose effect is set, the primary metric, effect supporting the claim)
METRIC_CLAIMS = [
    ("C1", "no_code", "bpb/code", 0.1),  # removing code raises code bpb
    ("C2", "no_code_hold_math", "tasks:math", 8),  # removing code (math held) improves math
    ("C2b", "no_code_fill_text", "tasks:math", 8),
    ("C2p", "no_code", "tasks:math", 8),
    ("C3", "scaffold", "tasks:math", 8),  # traces improve math exact match
]


def _verdicts(root, effects=None, **kw):
    synthetic.make_sweep(str(root), effects, **kw)
    report, _, _ = build.compute(str(root), replicates=300)
    return {c["id"]: c for c in report["claims"]}


@pytest.mark.parametrize(("claim", "arm", "metric", "effect"), METRIC_CLAIMS)
def test_metric_claims_follow_the_data(tmp_path, claim, arm, metric, effect):
    got = {}
    for label, e in (("supported", effect), ("contradicted", -effect), ("inconclusive", "noise")):
        c = _verdicts(tmp_path / label, {arm: {metric: e}})[claim]
        got[label] = c["verdict"]
        assert c["primary"]["metric"] == metric
        lo, hi = c["primary"]["gain_abs_ci"]
        assert lo <= c["primary"]["gain_abs"] <= hi
    assert got == {k: k for k in got}


def test_free_form_math_decides_the_math_claims_when_evaluated(tmp_path):
    suites = {**synthetic.SUITES, "math_free": ("linear", "gcd")}
    # Traces help only where the model may write them (free-form); answer-only math says the opposite.
    effects = {"scaffold": {"tasks:math_free": 8, "tasks:math": -8}}
    c3 = _verdicts(tmp_path, effects, suites=suites)["C3"]
    assert c3["primary"]["metric"] == "tasks:math_free" and c3["verdict"] == "supported"


def test_c5_compares_the_proportional_arm_with_the_held_math_arm(tmp_path):
    # Both arms improve math by the same amount against full: no extra-math effect between them.
    same = _verdicts(tmp_path / "a", {"no_code": {"tasks:math": 8}, "no_code_hold_math": {"tasks:math": 8}})
    assert same["C5"]["verdict"] == "inconclusive" and same["C2p"]["verdict"] == "supported"
    more = _verdicts(tmp_path / "b", {"no_code": {"tasks:math": 8}, "no_code_hold_math": {"tasks:math": 3}})
    assert more["C5"]["verdict"] == "supported"
    less = _verdicts(tmp_path / "c", {"no_code": {"tasks:math": 2}, "no_code_hold_math": {"tasks:math": 8}})
    assert less["C5"]["verdict"] == "contradicted"
    assert less["C5"]["comparison"] == "no_code vs no_code_hold_math"


def test_a_bpb_effect_is_signed_so_that_lower_is_better(tmp_path):
    c = _verdicts(tmp_path, {"no_code": {"bpb/code": 0.1}})["C1"]["primary"]
    assert not c["higher_is_better"]
    assert c["delta_abs"] == pytest.approx(0.1) and c["gain_abs"] == pytest.approx(-0.1)
    assert c["gain_pct"] == pytest.approx(-100 * c["delta_abs"] / c["baseline_score"])


def test_routing_claim_counts_seeds(tmp_path):
    root = str(tmp_path)
    synthetic.make_sweep(root, routing=False)
    for seed, largest in ((0, True), (1, True)):
        synthetic.write_routing(root, seed, synthetic.routing_jsd(largest))
    claims = {c["id"]: c for c in build.compute(root, replicates=100)[0]["claims"]}
    assert claims["C4-code"]["verdict"] == claims["C4-math"]["verdict"] == "supported"
    assert [p["largest"] for p in claims["C4-code"]["per_seed"]] == [True, True]
    synthetic.write_routing(root, 1, synthetic.routing_jsd(False))
    claims = {c["id"]: c for c in build.compute(root, replicates=100)[0]["claims"]}
    assert claims["C4-code"]["verdict"] == "inconclusive" and claims["C4-code"]["largest_in"] == 1
    synthetic.write_routing(root, 0, synthetic.routing_jsd(False))
    claims = {c["id"]: c for c in build.compute(root, replicates=100)[0]["claims"]}
    assert claims["C4-math"]["verdict"] == "contradicted"
    p = claims["C4-math"]["per_seed"][0]
    assert p["margin"] == pytest.approx(0.001 - 0.025) and p["largest_other"] == "code_math"


def test_routing_runs_named_otherwise_map_to_arms_by_workdir(tmp_path):
    root = str(tmp_path)
    synthetic.make_sweep(root, routing=False, seeds=(0,))
    names = {"full": "full-s0", "no_code": "run_a", "no_math": "run_b"}
    synthetic.write_routing(root, 0, synthetic.routing_jsd(True), names=names)
    report = build.compute(root, replicates=100)[0]
    claims = {c["id"]: c for c in report["claims"]}
    # The run names are not arms, but their workdirs are DIR/<arm>/seed_0: mapped by the path.
    assert report["routing"]["seeds"][0]["reference"] == "full"
    assert set(report["routing"]["seeds"][0]["jsd"]) == {"no_code", "no_math"}
    assert claims["C4-code"]["verdict"] == claims["C4-math"]["verdict"] == "supported"


def test_missing_pieces_make_claims_not_tested_naming_them(tmp_path):
    arms = tuple(a for a in synthetic.ARMS if a not in ("scaffold", "no_code_hold_math"))
    claims = _verdicts(tmp_path / "a", arms=arms, routing=False)
    assert claims["C3"]["verdict"] == "not tested" and "scaffold" in claims["C3"]["reason"]
    assert claims["C5"]["verdict"] == "not tested" and "no_code_hold_math" in claims["C5"]["reason"]
    assert (
        claims["C4-code"]["verdict"] == "not tested" and "no routing analysis" in claims["C4-code"]["reason"]
    )
    assert claims["C1"]["verdict"] != "not tested"

    claims = _verdicts(tmp_path / "b", {"no_code_hold_math": {"bpb/math": -0.1}}, tasks=False)
    # C3 needs exact match (bpb/math is not fair to scaffold): not tested, naming the metric and runs.
    assert claims["C3"]["verdict"] == "not tested"
    assert (
        "math exact match missing" in claims["C3"]["reason"] and "scaffold/seed_0" in claims["C3"]["reason"]
    )
    # C2 falls back to bpb/math and says so.
    assert claims["C2"]["primary"]["metric"] == "bpb/math" and claims["C2"]["verdict"] == "supported"
    assert "decided by bpb/math" in claims["C2"]["reason"]


def test_one_seed_and_one_item_has_no_interval_so_no_verdict(tmp_path):
    claims = _verdicts(tmp_path, {"no_code": {"bpb/code": 0.1}}, seeds=(0,), seq=False, tasks=False)
    c = claims["C1"]
    assert c["primary"]["items"] == 1 and c["primary"]["no_variance"]
    assert c["verdict"] == "inconclusive" and "nothing to resample" in c["reason"]


def test_confidence_is_used_for_every_interval(tmp_path):
    synthetic.make_sweep(str(tmp_path), {"no_code": {"tasks:math": 3}})
    wide = build.compute(str(tmp_path), confidence=0.99, replicates=400)[0]
    narrow = build.compute(str(tmp_path), confidence=0.5, replicates=400)[0]
    assert wide["confidence"] == 0.99 and wide["capability"]["bpb"]["confidence"] == 0.99
    w = next(c for c in wide["claims"] if c["id"] == "C2p")["primary"]["gain_abs_ci"]
    n = next(c for c in narrow["claims"] if c["id"] == "C2p")["primary"]["gain_abs_ci"]
    assert w[0] < n[0] and n[1] < w[1]
