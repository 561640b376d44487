"""Decision accuracy between a smaller and a larger sweep of the same study."""

import pytest

from mixlab.report import build, decision, load, scores
from tests.report import synthetic_sweeps

ARMS = ("full", "no_code", "no_code_hold_math", "scaffold")


def _sweep(root, effects):
    synthetic_sweeps.make_sweep(str(root), effects, arms=ARMS, seeds=(0, 1, 2), routing=False)
    return load.load(str(root), "full")


def test_same_order_is_one_reversed_is_zero(tmp_path):
    order = {"no_code": -0.3, "no_code_hold_math": -0.2, "scaffold": 0.1}  # answer_bpb/math shifts
    small = _sweep(tmp_path / "small", {a: {"answer_bpb/math": e} for a, e in order.items()})
    same = _sweep(tmp_path / "same", {a: {"answer_bpb/math": 2 * e} for a, e in order.items()})
    flip = _sweep(tmp_path / "flip", {a: {"answer_bpb/math": -e} for a, e in order.items()})
    seq = scores.per_sequence_domains(small)
    got = decision.compare(same, seq, small, seq, ["answer_bpb/math"])
    assert got["accuracy"] == 1.0 and got["pairs"] == 6
    got = decision.compare(flip, seq, small, seq, ["answer_bpb/math"])
    # Every pair with an effect flips; full vs the others too: 6 pairs, all reversed.
    assert got["accuracy"] == 0.0
    pair = next(p for p in got["metrics"][0]["pairs"] if p["arms"] == ["full", "no_code"])
    assert pair["small_diff"] == pytest.approx(0.3, abs=0.01) and pair["large_diff"] == pytest.approx(
        -0.3, abs=0.01
    )


def test_the_report_states_decision_accuracy(tmp_path):
    _sweep(tmp_path / "small", {"no_code": {"bpb/code": 0.1}})
    _sweep(tmp_path / "large", {"no_code": {"bpb/code": 0.2}})
    report, _, _ = build.compute(str(tmp_path / "large"), replicates=50, smaller=(str(tmp_path / "small"),))
    d = report["decision"][0]
    assert d["smaller"] == "small" and {m["metric"] for m in d["metrics"]} >= {"bpb/code", "answer_bpb/math"}
    code = next(m for m in d["metrics"] if m["metric"] == "bpb/code")
    # Pairs with no_code are ordered by its effect at both scales; two arms whose synthetic seed
    # offsets coincide tie (a half each).
    assert all(p["agree"] == 1.0 for p in code["pairs"] if "no_code" in p["arms"])
    assert {p["agree"] for p in code["pairs"]} <= {0.5, 1.0}
