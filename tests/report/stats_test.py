"""Seed-level intervals hold their coverage where the study runs; Holm; the constant-answer floor."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from mixlab.report import stats


def test_paired_t_equals_the_textbook_formula():
    d = [0.3, 0.1, 0.25, 0.4, 0.2]
    got = stats.paired_t(d, 0.95)
    se = np.std(d, ddof=1) / math.sqrt(5)
    half = sps.t.ppf(0.975, 4) * se
    assert got["mean"] == pytest.approx(np.mean(d))
    assert got["ci"] == pytest.approx([np.mean(d) - half, np.mean(d) + half])
    assert got["p"] == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue)


def test_below_three_seeds_there_is_no_interval():
    for d in ([0.2], [0.2, 0.4]):
        got = stats.paired_t(d)
        assert got["ci"] is None and got["p"] is None and got["mean"] == pytest.approx(np.mean(d))


@pytest.mark.parametrize("seeds", [3, 5])
def test_coverage_with_seed_dominated_variance(seeds):
    # The regime the study runs in: a run's score is a mean over 240 fixed items, and the variance
    # between seeds (init, data order) dominates. Each arm-seed gets its own seed effect (sd 0.05)
    # on top of item scores whose noise is small (sd 0.2 per item, 0.013 per run mean).
    rng = np.random.default_rng(seeds)
    trials, items, delta, covered = 2000, 240, 0.03, 0
    item_effect = rng.normal(0, 0.5, items)  # fixed items: the same in every run
    for _ in range(trials):
        seed_a, seed_b = rng.normal(0, 0.05, (2, seeds))
        a = delta + item_effect + seed_a[:, None] + rng.normal(0, 0.2, (seeds, items))
        b = item_effect + seed_b[:, None] + rng.normal(0, 0.2, (seeds, items))
        lo, hi = stats.paired_t(a.mean(1) - b.mean(1), 0.95)["ci"]
        covered += lo <= delta <= hi
    assert covered / trials >= 0.9, covered / trials


def test_holm_step_down():
    got = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    # sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, max(0.06, 0.04) = 0.06
    assert got["a"] == pytest.approx(0.03) and got["c"] == pytest.approx(0.06)
    assert got["b"] == pytest.approx(0.06) and got["d"] is None
    assert stats.holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}


def test_constant_answer_rate():
    assert stats.constant_answer_rate(["10", "3", "10", "7"]) == (0.5, "10")
    assert stats.constant_answer_rate([]) == (0.0, None)
