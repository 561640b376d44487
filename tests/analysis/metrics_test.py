"""Every metric against a hand computation: uniform and perfectly specialised routers, and naive
per-token loops on a random trace."""

import itertools
import math

import numpy as np
import pytest

from mixlab.analysis import metrics
from tests.analysis import synthetic_traces


def test_uniform_router():
    tr = synthetic_traces.uniform(tokens_per_domain=64, num_domains=4, num_experts=8, layers=2)
    m = metrics.trace_metrics(tr, delta=0.2)
    np.testing.assert_array_equal(m["tokens_D"], [64] * 4)
    np.testing.assert_allclose(m["activation_NDE"], 1 / 8)
    np.testing.assert_allclose(m["specialisation_NDE"], 2 / 8)  # the uniform baseline K/E
    assert m["spec_baseline"] == 2 / 8
    np.testing.assert_allclose(m["entropy_ND"], math.log(8))
    np.testing.assert_allclose(np.exp(m["entropy_N"]), 8)
    np.testing.assert_array_equal(m["dead_N"], 0)
    np.testing.assert_allclose(m["imbalance_N"], 1)
    np.testing.assert_allclose(m["jsd_NDD"], 0, atol=1e-12)
    assert np.isnan(m["overlap_NDD"]).all()  # no expert above (K/E)(1 + delta): J undefined
    # Experts come in fixed pairs (2j, 2j + 1): C(2j -> 2j+1) = 1, all else 0.
    expected = np.zeros((8, 8))
    for j in range(4):
        expected[2 * j, 2 * j + 1] = expected[2 * j + 1, 2 * j] = 1
    np.testing.assert_allclose(m["coactivation_NEE"], np.broadcast_to(expected, (2, 8, 8)))
    np.testing.assert_array_equal(m["consecutive_N"], 0)  # first choice cycles 0, 2, 4, 6


def test_perfectly_specialised_router():
    tr = synthetic_traces.specialised(tokens_per_domain=64, num_domains=4, layers=2)
    m = metrics.trace_metrics(tr, delta=0.2)
    p = np.zeros((4, 8))
    for d in range(4):
        p[d, [2 * d, 2 * d + 1]] = 0.5
    np.testing.assert_allclose(m["activation_NDE"], np.broadcast_to(p, (2, 4, 8)))
    np.testing.assert_allclose(m["specialisation_NDE"][0], 2 * p)  # S = 1 on the domain's two experts
    np.testing.assert_allclose(m["entropy_ND"], math.log(2))
    np.testing.assert_allclose(m["entropy_N"], math.log(8))  # equal tokens per domain: all experts even
    np.testing.assert_allclose(m["dead_ND"], 6 / 8)
    np.testing.assert_array_equal(m["dead_N"], 0)
    np.testing.assert_allclose(m["imbalance_ND"], 4)  # T_d / (2 T_d / 8)
    np.testing.assert_allclose(m["imbalance_N"], 1)
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(m["jsd_NDD"][:, off], 1)  # disjoint supports: 1 bit
    np.testing.assert_allclose(m["jsd_NDD"][:, ~off], 0)
    np.testing.assert_array_equal(m["overlap_NDD"][0], np.eye(4))  # E^d = {2d, 2d+1}
    np.testing.assert_array_equal(m["expert_sets_NDE"][0], p > 0)
    np.testing.assert_allclose(m["vocab_spec_N"], 1)  # token ids never cross domains
    np.testing.assert_allclose(m["consecutive_N"], 1)
    np.testing.assert_allclose(m["consecutive_ND"], 1)


def test_vocab_specialisation_hand_example():
    # Token 7 is routed first to expert 0 three times and to expert 2 once: V = 3/4. Token 9: once, V = 1.
    first_NT = np.array([[0, 0, 0, 2, 1]])
    token_T = np.array([7, 7, 7, 7, 9])
    domain_T = np.array([0, 0, 1, 1, 1])
    overall, per_domain = metrics.vocab_specialisation(first_NT, token_T, domain_T, 2, 4)
    assert overall[0] == pytest.approx((4 * 0.75 + 1) / 5)
    np.testing.assert_allclose(per_domain[0], [0.75, (0.75 + 0.75 + 1) / 3])


def test_jsd_hand_values_and_units():
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    # M = (3/4, 1/4): KL(p||M) = log2(4/3); KL(q||M) = 1/2 log2(2/3) + 1/2 log2(2).
    expected = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5)
    assert metrics.jsd(p, q) == pytest.approx(expected)
    assert metrics.jsd(p, p) == 0


def test_consecutive_pairs_stay_within_sequences():
    first_NT = np.array([[3, 3, 3, 3, 5, 5]])
    position_T = np.array([0, 1, 2, 0, 1, 2])  # two sequences of 3: the pair (2, 3) does not count
    domain_T = np.array([0, 0, 0, 1, 1, 1])
    overall, per_domain = metrics.consecutive_same(first_NT, domain_T, position_T, 2)
    assert overall[0] == pytest.approx(3 / 4)
    np.testing.assert_allclose(per_domain[0], [1.0, 0.5])


def test_metrics_equal_naive_loops_on_a_random_trace():
    names = ["a", "b", "c"]
    tr = synthetic_traces.random(tokens=600, layers=2, num_experts=6, top_k=3, names=names, seed=1, vocab=20)
    m = metrics.trace_metrics(tr)
    N, T, K = tr.experts_NTK.shape
    E = 6
    n = np.zeros((N, 3, E), int)
    pair = np.zeros((N, E, E))
    n_i = np.zeros((N, E))
    for layer, t in itertools.product(range(N), range(T)):
        chosen = list(tr.experts_NTK[layer, t])
        for e in chosen:
            n[layer, tr.domain_T[t], e] += 1
            n_i[layer, e] += 1
        for i, j in itertools.permutations(chosen, 2):
            pair[layer, i, j] += 1
    np.testing.assert_array_equal(tr.counts_NDE, n)
    np.testing.assert_allclose(m["coactivation_NEE"], pair / n_i[:, :, None])
    for layer in range(N):
        same = [
            tr.experts_NTK[layer, t, 0] == tr.experts_NTK[layer, t + 1, 0]
            for t in range(T - 1)
            if tr.domain_T[t] == tr.domain_T[t + 1] and tr.position_T[t + 1] == tr.position_T[t] + 1
        ]
        assert m["consecutive_N"][layer] == pytest.approx(np.mean(same))
        v = {}
        for x in set(tr.token_T.tolist()):
            firsts = tr.experts_NTK[layer, tr.token_T == x, 0]
            v[x] = np.bincount(firsts).max() / len(firsts)
        assert m["vocab_spec_N"][layer] == pytest.approx(np.mean([v[x] for x in tr.token_T.tolist()]))
        for d in range(3):
            s = n[layer, d] / np.sum(tr.domain_T == d)
            np.testing.assert_allclose(m["specialisation_NDE"][layer, d], s)
            sets = s > K / E * 1.2
            for d2 in range(3):
                s2 = n[layer, d2] / np.sum(tr.domain_T == d2) > K / E * 1.2
                union = np.sum(sets | s2)
                if union:
                    assert m["overlap_NDD"][layer, d, d2] == pytest.approx(np.sum(sets & s2) / union)


def test_domain_without_tokens_is_nan_not_an_error():
    tr = synthetic_traces.specialised(tokens_per_domain=8, num_domains=2)
    counts = np.concatenate([tr.counts_NDE, np.zeros((1, 1, 4), np.int64)], axis=1)  # a third, empty
    m = metrics.count_metrics(counts, top_k=2)
    assert np.isnan(m["activation_NDE"][0, 2]).all() and np.isnan(m["jsd_NDD"][0, 0, 2])
    assert m["jsd_NDD"][0, 0, 1] == pytest.approx(1)
