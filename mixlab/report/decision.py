"""Does the small scale predict the larger one? Decision accuracy between two sweeps of one study.

For every pair of arms that both sweeps ran, and every metric both evaluated, the pair is ordered the
same at both scales when sign(m_a − m_b) agrees (m: the arm's mean over seeds and items); a tie at
either scale counts one half. Decision accuracy = the share of pairs ordered the same (DataDecide, Ai2
2025): 1 means the small scale picks every winner, 0.5 is a coin. The items may differ between the
scales (each orders its own arms); with few arms the accuracy moves in large steps, so the pair count
is given beside it.
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from mixlab.report import claims
from mixlab.report.load import Sweep


def arm_means(sweep: Sweep, metric: str, seq_domains: set[str]) -> dict[str, float]:
    """Mean over seeds (of the mean over items) per arm whose every run has the metric."""
    out = {}
    for arm in sweep.arms:
        if per_seed := claims.seed_means(sweep.of(arm), metric, seq_domains):
            out[arm] = float(np.mean([mean for mean, _, _ in per_seed.values()]))
    return out


def _agree(a: float, b: float) -> float:
    sa, sb = np.sign(a), np.sign(b)
    return 0.5 if sa == 0 or sb == 0 else float(sa == sb)


def compare(large: Sweep, large_seq: set[str], small: Sweep, small_seq: set[str], metrics: list[str]) -> dict:
    """{"smaller": its directory name, "metrics": [{metric, pairs, accuracy}], "accuracy"}."""
    rows = []
    for m in metrics:
        big, little = arm_means(large, m, large_seq), arm_means(small, m, small_seq)
        common = [a for a in big if a in little]
        pairs = [
            {
                "arms": [a, b],
                "large_diff": big[a] - big[b],
                "small_diff": little[a] - little[b],
                "agree": _agree(big[a] - big[b], little[a] - little[b]),
            }
            for a, b in itertools.combinations(common, 2)
        ]
        acc = float(np.mean([p["agree"] for p in pairs])) if pairs else None
        rows.append({"metric": m, "arms": common, "pairs": pairs, "accuracy": acc})
    scored = [p["agree"] for r in rows for p in r["pairs"]]
    return {
        "smaller": os.path.basename(os.path.normpath(small.root)),
        "smaller_path": small.root,
        "metrics": rows,
        "accuracy": float(np.mean(scored)) if scored else None,
        "pairs": len(scored),
    }
