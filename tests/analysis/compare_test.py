"""Cross-arm JSD, router saturation and the competition index, including what cannot be compared."""

import dataclasses

import numpy as np
import pytest

from mixlab.analysis import compare, metrics
from mixlab.analysis.trace import Trace
from tests.analysis import synthetic_traces


def summary(tr: Trace) -> dict:
    return {**metrics.count_metrics(tr.counts_NDE, tr.top_k), "domain_names": tr.domain_names}


def cross(a: Trace, b: Trace, warnings: list[str]) -> dict:
    return compare.cross_arm_jsd(
        summary(a), summary(b), ref_name="ref", arm_name="arm", step_label="step 5", warnings=warnings
    )


def test_identical_runs_have_zero_cross_arm_jsd():
    tr = synthetic_traces.random(
        tokens=2000, layers=3, num_experts=8, top_k=2, names=["code", "math", "text"]
    )
    warnings = []
    out = cross(tr, tr, warnings)
    assert warnings == [] and sorted(out) == [0, 1, 2]
    assert all(v == 0 for layer in out.values() for v in layer.values())


def test_cross_arm_jsd_of_known_shift():
    a = synthetic_traces.specialised(tokens_per_domain=16, num_domains=2, names=["code", "math"])
    b = synthetic_traces.uniform(tokens_per_domain=16, num_domains=2, num_experts=4)
    b = dataclasses.replace(b, domain_names=("code", "math"))
    out = cross(a, b, [])
    # code: (1/2, 1/2, 0, 0) vs uniform quarters: M = (3/8, 3/8, 1/8, 1/8).
    expected = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2(2 / 3) + 0.5 * np.log2(2))
    assert out[0]["code"] == pytest.approx(expected) and out[0]["math"] == pytest.approx(expected)


def test_mismatched_runs_warn_and_compare_what_they_can():
    names = ["code", "math", "text"]
    ref = synthetic_traces.random(tokens=900, layers=3, num_experts=8, top_k=2, names=names)
    warnings = []
    # Different expert count: nothing comparable, one warning naming both runs.
    other = synthetic_traces.random(tokens=900, layers=3, num_experts=16, top_k=2, names=names)
    assert cross(ref, other, warnings) == {}
    assert "arm has 16 experts, ref 8" in warnings[-1] and "step 5" in warnings[-1]
    # Fewer layers: the first two compared by position.
    shallow = synthetic_traces.random(tokens=900, layers=2, num_experts=8, top_k=2, names=names)
    assert sorted(cross(ref, shallow, warnings)) == [0, 1] and "2 MoE layers" in warnings[-1]
    # A domain missing from the arm (no tokens of `math`): the others are still compared.
    keep = ref.domain_T != 1
    no_math = Trace.build(
        ref.experts_NTK[:, keep], ref.gates_NTK[:, keep], ref.domain_T[keep], ref.token_T[keep],
        ref.position_T[keep], names, 8,
    )  # fmt: skip
    out = cross(ref, no_math, warnings)
    assert set(out[0]) == {"code", "text"} and out[0]["code"] == 0
    assert "domain 'math' has no tokens in arm" in warnings[-1]


def test_saturation_identical_checkpoints_is_one_and_constructed_change_is_exact():
    final = synthetic_traces.specialised(tokens_per_domain=40, num_domains=2, layers=2)
    e_NTK = final.experts_NTK.copy()
    # Layer 1: the first 20 tokens of domain 0 swap expert 1 for expert 3 (|K ∩ K_final| = 1 of 2);
    # tokens 20-29 of domain 0 take experts (3, 2) of domain 1 (intersection 0).
    e_NTK[1, :20, 1] = 3
    e_NTK[1, 20:30] = [3, 2]
    early = dataclasses.replace(final, experts_NTK=e_NTK)
    warnings = []
    sat = compare.saturation_series({100: early, 200: final}, run="r", warnings=warnings)
    assert warnings == []
    np.testing.assert_allclose(sat[200]["overall_N"], 1)
    np.testing.assert_allclose(sat[100]["overall_N"], [1, (20 * 0.5 + 10 * 0 + 50) / 80])
    np.testing.assert_allclose(sat[100]["domain_ND"][1], [(20 * 0.5 + 10) / 40, 1])


def test_saturation_on_other_tokens_is_skipped_with_a_warning():
    a = synthetic_traces.specialised(tokens_per_domain=8, num_domains=2)
    b = dataclasses.replace(a, token_T=a.token_T + 1)
    warnings = []
    sat = compare.saturation_series({1: b, 2: a}, run="arm", warnings=warnings)
    assert sorted(sat) == [2] and "saturation arm: step 1 routed other tokens" in warnings[0]


def test_step_pairs_name_missing_steps():
    warnings = []
    assert compare.step_pairs([1, 2, 3], [1, 3], ref_name="full", arm_name="wo", warnings=warnings) == [
        (1, 1),
        (3, 3),
    ]
    assert warnings == ["wo has no step 2 (has [1, 3]); skipped at that step"]
    assert compare.step_pairs([4], [3], ref_name="full", arm_name="wo", warnings=warnings) == [(4, 3)]
    assert "share no step" in warnings[-1]


def test_competition_index_signs_and_overlap():
    names = ("code", "math", "text")
    overlap = np.array([[[1.0, 0.5, 0.0], [0.5, 1.0, np.nan], [0.0, np.nan, 1.0]]])
    ref = {
        "mixture": {"code": 0.2, "math": 0.3, "text": 0.5},
        "loss": {d: {"loss": 2.0, "loss_se": 0.01} for d in names},
        "domain_names": names,
        "overlap_NDD": overlap,
    }
    arm = {
        "mixture": {"code": 0.0, "math": 0.375, "text": 0.625},  # `remove:code`
        "loss": {"code": {"loss": 3.0, "loss_se": 0.01}, "math": {"loss": 2.5, "loss_se": 0.01},
                 "text": {"loss": 1.9, "loss_se": 0.01}},
        "domain_names": names,
    }  # fmt: skip
    out = compare.competition(ref, arm, ref_name="full", arm_name="wo", step_label="step 5", warnings=[])
    assert out["intervention"] == "code" and out["delta_share"] == pytest.approx(-0.2)
    # math's loss rose without code: code helped math (synergy), g = -0.5 / -0.2.
    assert out["effects"]["math"]["g"] == pytest.approx(2.5) and out["effects"]["math"]["sign"] == 1
    assert out["index_layer_domain"]["math"][0] == pytest.approx(0.5)  # J(math, code) = 0.5
    assert out["effects"]["text"]["sign"] == -1 and out["index_layer_domain"]["text"][0] == 0  # J = 0
    warnings = []
    assert (
        compare.competition(ref, ref, ref_name="a", arm_name="b", step_label="s", warnings=warnings) is None
    )
    assert "same mixture" in warnings[0]
