"""The claims' verdicts follow the synthetic data: seed-level tests, Holm, readings, A/A, floors."""

import pytest

from mixlab.report import build, claims
from tests.report import synthetic_sweeps

# (claim, the arm whose effect is set, the primary metric, effect supporting the claim)
METRIC_CLAIMS = [
    ("C1", "no_code", "bpb/code", 0.1),  # removing code raises code bpb
    ("C2", "no_code_hold_math", "answer_bpb/math", -0.2),  # removing code (math held) lowers answer bpb
    ("C2b", "no_code_fill_text", "answer_bpb/math", -0.2),
    ("C3", "scaffold", "choice_prob/math", 0.1),  # traces raise the gold answer's probability
    ("C5", "no_code", "answer_bpb/math", -0.2),
]


def _verdicts(root, effects=None, **kw):
    synthetic_sweeps.make_sweep(str(root), effects, **kw)
    report, _, _ = build.compute(str(root), replicates=100)
    return {c["id"]: c for c in report["claims"]}, report


@pytest.mark.parametrize(("claim", "arm", "metric", "effect"), METRIC_CLAIMS)
def test_metric_claims_follow_the_data(tmp_path, claim, arm, metric, effect):
    got = {}
    for label, e in (("supported", effect), ("contradicted", -effect), ("inconclusive", "noise")):
        c = _verdicts(tmp_path / label, {arm: {metric: e}})[0][claim]
        got[label] = c["verdict"]
        assert c["primary"]["metric"] == metric
        lo, hi = c["primary"]["gain_ci"]
        assert lo <= c["primary"]["gain"] <= hi and len(c["primary"]["seeds"]["paired"]) == 5
    assert got == {k: k for k in got}


def test_the_estimate_is_the_mean_of_per_seed_paired_differences(tmp_path):
    c = _verdicts(tmp_path, {"no_code": {"bpb/code": 0.1}})[0]["C1"]["primary"]
    offsets = [
        synthetic_sweeps.seed_offset("no_code", s) - synthetic_sweeps.seed_offset("full", s) for s in range(5)
    ]
    # bpb: lower is better, so the gain is minus the difference of the per-seed means.
    assert c["per_seed_gain"] == pytest.approx({str(s): -(0.1 + o) for s, o in enumerate(offsets)})
    assert c["gain"] == pytest.approx(-(0.1 + sum(offsets) / 5))
    assert c["gain_pct"] == pytest.approx(100 * c["gain"] / c["baseline_score"])


def test_a_readings_direction_flips_its_verdict(tmp_path):
    _, report = _verdicts(tmp_path / "a", {"no_code": {"answer_bpb/math": -0.2}})
    c2p = next(c for c in report["claims"] if c["id"] == "C2p")
    # The summary reads "better" (code competes), the note on the paper's number "worse".
    assert [r["expect"] for r in c2p["readings"]] == ["better", "worse"]
    assert [r["verdict"] for r in c2p["readings"]] == ["supported", "contradicted"]
    _, report = _verdicts(tmp_path / "b", {"no_code": {"answer_bpb/math": 0.2}})
    c2p = next(c for c in report["claims"] if c["id"] == "C2p")
    assert [r["verdict"] for r in c2p["readings"]] == ["contradicted", "supported"]
    assert "the data supports 'worse'" in " ".join(report["summary"])


def test_fewer_than_three_seeds_give_no_seed_level_interval(tmp_path):
    claims_, report = _verdicts(tmp_path, {"no_code": {"bpb/code": 0.5}}, seeds=(0, 1))
    c = claims_["C1"]
    assert c["verdict"] == "inconclusive" and c["primary"]["gain_ci"] is None
    assert "no seed-level interval" in c["reason"] and report["holm"]["m"] == 0
    assert any("no seed-level interval" in s for s in report["summary"])


def test_an_aa_sweep_supports_nothing(tmp_path):
    # Every arm is the same distribution (seed noise only): nothing may be supported or contradicted.
    claims_, report = _verdicts(tmp_path, {})
    decided = {k: c["verdict"] for k, c in claims_.items() if c["kind"] == "metric"}
    assert set(decided.values()) == {"inconclusive"}, decided
    assert report["aa"] and all(e["verdict"] == "no difference" for e in report["aa"])


def test_holm_adjusts_over_the_primary_claims(tmp_path):
    claims_, report = _verdicts(tmp_path, {"no_code": {"bpb/code": 0.1}})
    ps = {k: c["primary"]["p"] for k, c in claims_.items() if c.get("primary") and not c["undecided"]}
    m = len(ps)
    assert report["holm"]["m"] == m and m >= 8
    smallest = min(ps, key=ps.get)
    assert claims_[smallest]["primary"]["p_holm"] == pytest.approx(min(1.0, ps[smallest] * m))
    # Two claims: the smaller p is doubled, the larger kept (step-down, running maximum).
    result = claims.evaluate(
        [
            claims.Claim("X", "x", "no_code", "full", (claims.Reading("worse", "test"),), ("bpb/code",)),
            claims.Claim("Y", "y", "no_math", "full", (claims.Reading("worse", "test"),), ("bpb/text",)),
        ],
        build.load.load(str(tmp_path), "full"),
        build.scores.per_sequence_domains(build.load.load(str(tmp_path), "full")),
        {"seeds": []},
        confidence=0.95,
    )
    x, y = result["claims"]
    assert x["primary"]["p"] < y["primary"]["p"]
    assert x["primary"]["p_holm"] == pytest.approx(min(1.0, 2 * x["primary"]["p"]))
    assert y["primary"]["p_holm"] == pytest.approx(max(x["primary"]["p_holm"], y["primary"]["p"]))
    assert x["verdict"] == "supported" and y["verdict"] == "inconclusive"


def test_secondary_metrics_are_exploratory(tmp_path):
    c = _verdicts(tmp_path, {"no_code_hold_math": {"answer_bpb/math": -0.2, "choice_prob/math": 0.1}})[0][
        "C2"
    ]
    assert c["secondary"][0]["metric"] == "choice_prob/math" and "verdict" not in c["secondary"][0]
    assert "p_holm" not in c["secondary"][0]


def test_accuracies_need_thirty_correct_items(tmp_path):
    # Without answer-level metrics C3 falls to free-form exact match: 10 of 40 right in each arm.
    suites = {**synthetic_sweeps.SUITES, "math_free": ("linear", "gcd")}
    c = _verdicts(tmp_path, {"scaffold": {"tasks:math_free": 8}}, suites=suites, answers=False)[0]["C3"]
    assert c["primary"]["metric"] == "tasks:math_free" and c["verdict"] == "inconclusive"
    assert "fewer than 30 correct" in c["reason"]


def test_c1_is_worded_as_measured_when_no_task_clears_its_floor(tmp_path):
    c = _verdicts(tmp_path, {"no_code": {"bpb/code": 0.1}})[0]["C1"]
    assert c["text"].startswith("pure code lowers") and c["paper_text"] == "code helps programming"


def test_routing_claims_compare_non_siblings_and_the_aa_floor(tmp_path):
    root = str(tmp_path)
    synthetic_sweeps.make_sweep(root, routing=False)
    for seed in range(5):
        synthetic_sweeps.write_routing(root, seed, synthetic_sweeps.routing_jsd(True))
    got = {c["id"]: c for c in build.compute(root, replicates=100)[0]["claims"]}
    assert got["C4-code"]["verdict"] == got["C4-math"]["verdict"] == "supported"
    row = got["C4-code"]["primary"]["per_seed"][0]
    # code_text and code_math are code's siblings: the largest non-sibling is math_traces (0.024).
    assert row["largest_non_sibling"] == "math_traces"
    assert row["margin_non_sibling"] == pytest.approx(0.2 - 0.024) and row["jsd_aa"] == pytest.approx(0.01)
    for seed in range(5):
        synthetic_sweeps.write_routing(root, seed, synthetic_sweeps.routing_jsd(False))
    got = {c["id"]: c for c in build.compute(root, replicates=100)[0]["claims"]}
    assert got["C4-math"]["verdict"] == "contradicted"


def test_competition_and_synergy_follow_the_routing_index(tmp_path):
    root = str(tmp_path)
    synthetic_sweeps.make_sweep(root, routing=False)
    for comp, want in (((-0.4, 0.4), ("supported", "supported")), ((0.4, -0.4), ("contradicted",) * 2)):
        for seed in range(5):
            synthetic_sweeps.write_routing(root, seed, synthetic_sweeps.routing_jsd(True), comp=comp)
        got = {c["id"]: c for c in build.compute(root, replicates=100)[0]["claims"]}
        assert (got["C6"]["verdict"], got["C7"]["verdict"]) == want
        assert got["C6"]["primary"]["overlap"] == pytest.approx(0.3)  # J(math, code), layer mean


def test_missing_pieces_make_claims_not_tested_naming_them(tmp_path):
    arms = tuple(a for a in synthetic_sweeps.ARMS if a not in ("scaffold", "no_code_hold_math"))
    got = _verdicts(tmp_path, arms=arms, routing=False)[0]
    assert got["C3"]["verdict"] == "not tested" and "scaffold" in got["C3"]["reason"]
    assert got["C5"]["verdict"] == "not tested" and "no_code_hold_math" in got["C5"]["reason"]
    assert got["C4-code"]["verdict"] == "not tested" and "no routing analysis" in got["C4-code"]["reason"]
    assert got["C1"]["verdict"] != "not tested"
