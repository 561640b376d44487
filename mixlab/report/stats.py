"""The statistics the claims are decided with: seed-level paired t intervals and Holm's correction.

Why seeds, not items: in a training study the variance that decides whether an arm is better is the
variance between training runs. Each run's score is a mean over the same eval items, so the paired
difference of two arms in seed s, d_s = score(arm, s) − score(baseline, s), carries the seed-to-seed
variation (init, data order, routing noise) and the item-by-run interaction; the items themselves are
fixed (the interval is about these eval items, not a population of items). With n seeds,

  d̄ ± t_{n−1, 1−α/2} · sd(d) / √n,    p = 2 · P(T_{n−1} > |d̄| / (sd(d) / √n))

is exact when d_s is normal, whatever its variance, which the percentile bootstrap over 2-5 seeds is
not (with 2 seeds it has 3 possible seed draws and covers ~74% at a nominal 95%). Below `MIN_SEEDS`
seeds no seed-level interval is given. Holm's step-down (Holm 1979) controls the family-wise error rate
over the primary claims: sort the m p-values, p_(i) · (m − i + 1), running maximum, capped at 1.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

MIN_SEEDS = 3  # fewer paired seeds: "no seed-level interval"


def paired_t(diffs: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean of the per-seed differences, its t interval and two-sided p (H0: mean 0).

    Returns {"n", "mean", "ci", "p", "sd"}; with fewer than MIN_SEEDS differences `ci` and `p` are None.
    A zero standard deviation gives a zero-width interval and p = 0 (or 1 when the mean is 0 too)."""
    d = np.asarray(list(diffs), dtype=np.float64)
    n = int(d.size)
    out = {"n": n, "mean": float(d.mean()) if n else None, "ci": None, "p": None, "sd": None}
    if n < MIN_SEEDS:
        return out
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * se
    p = float(2 * sps.t.sf(abs(out["mean"]) / se, n - 1)) if se > 0 else float(out["mean"] == 0)
    out.update(sd=sd, ci=[out["mean"] - half, out["mean"] + half], p=p)
    return out


def holm(pvalues: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm-adjusted p-values; None stays None and does not count towards m."""
    named = sorted(((p, k) for k, p in pvalues.items() if p is not None), key=lambda x: x[0])
    m, running, out = len(named), 0.0, {k: None for k in pvalues}
    for i, (p, k) in enumerate(named):
        running = max(running, min(1.0, p * (m - i)))
        out[k] = running
    return out


def constant_answer_rate(answers: Iterable[str]) -> tuple[float, str | None]:
    """The accuracy of always giving the most frequent answer, and that answer (answers normalised by
    the caller): the floor an exact-match accuracy must clear to mean anything."""
    counts = collections.Counter(answers)
    if not counts:
        return 0.0, None
    answer, n = counts.most_common(1)[0]
    return n / sum(counts.values()), answer
