"""The per-layer routing metrics that reach routing.json, summary.md and the study report.

A metric is one function registered here: it takes `m`, the metrics dict of one trace or of one run's
training counts (`metrics.count_metrics`: `counts_NDE` and everything derived from it; a trace's also
holds `trace`, the `trace.Trace`, and `metrics.trace_metrics`' extras) and returns
`(overall_N, per_domain_ND)`, the value per MoE layer over all domains and per (layer, domain); either
may be None (not defined for that scope, or a trace metric given training counts). Registered metrics
are written under their name in routing.json's `runs.<run>.steps.<step>.layers.<layer>.all` and
`.domains.<d>` (`export.layers_json`); those with `summary=True` are also columns of summary.md's
layer tables and, as layer means at each run's last analysed step, of the report's routing table and
results.csv (`report/routing_summary.py`). mixlab/analysis/README.md shows how to add one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

Values = tuple[np.ndarray | None, np.ndarray | None]


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    doc: str  # formula and units, one line
    fn: Callable[[dict], Values]
    summary: bool = False  # a column of summary.md and of the report's routing table (layer mean)
    label: str = ""  # column heading; default the name
    digits: int = 3  # decimals in the tables


METRICS: dict[str, Metric] = {}


def register(name: str, doc: str, *, summary: bool = False, label: str = "", digits: int = 3):
    """Decorator: `fn(m) -> (overall_N, per_domain_ND)` becomes metric `name`."""

    def add(fn: Callable[[dict], Values]) -> Callable[[dict], Values]:
        if name in METRICS:
            raise ValueError(f"routing metric {name!r} is registered twice")
        METRICS[name] = Metric(name, doc, fn, summary, label or name, digits)
        return fn

    return add


def evaluate(m: dict) -> dict[str, Values]:
    """Every registered metric of `m`, in registration order (the order of routing.json's keys)."""
    return {name: metric.fn(m) for name, metric in METRICS.items()}


def summary_metrics() -> list[Metric]:
    return [metric for metric in METRICS.values() if metric.summary]


@register("tokens", "|T_d|: tokens of the domain in the sample")
def _tokens(m):
    return None, np.broadcast_to(np.round(m["tokens_D"]).astype(np.int64), m["entropy_ND"].shape)


@register("activation", "P_{l,d}(e) = n_{l,d}(e) / sum_e' n_{l,d}(e'), a vector over experts")
def _activation(m):
    return None, m["activation_NDE"]


@register("specialisation", "S_l(d,e) = n_{l,d}(e) / |T_d| (uniform router: k/N), a vector over experts")
def _specialisation(m):
    return None, m["specialisation_NDE"]


@register("expert_set", "E^d = {e : S_l(d,e) > (k/N)(1 + delta)}, expert indices")
def _expert_set(m):
    N, D, _ = m["expert_sets_NDE"].shape
    sets = np.empty((N, D), object)
    for layer in range(N):
        for d in range(D):
            sets[layer, d] = np.flatnonzero(m["expert_sets_NDE"][layer, d])
    return None, sets


@register(
    "entropy", "H = -sum_e q_e ln q_e (nats) of the assignment shares", summary=True, label="entropy (nats)"
)
def _entropy(m):
    return m["entropy_N"], m["entropy_ND"]


@register("effective_experts", "exp(H)", summary=True, label="effective experts", digits=2)
def _effective_experts(m):
    return np.exp(m["entropy_N"]), np.exp(m["entropy_ND"])


@register(
    "dead_frac",
    "share of experts with no assignment in the sample",
    summary=True,
    label="dead experts",
    digits=2,
)
def _dead(m):
    return m["dead_N"], m["dead_ND"]


@register("load_imbalance", "max_e n_e / mean_e n_e")
def _imbalance(m):
    return m["imbalance_N"], m["imbalance_ND"]


@register("vocab_spec", "V_l(x) = max_e N_l(x,e) / N_l(x) of the first choice, token-weighted mean (traces)")
def _vocab_spec(m):
    return m.get("vocab_spec_N"), m.get("vocab_spec_ND")


@register("consecutive_same", "mean 1[e1(t) = e1(t+1)] within a sequence; uniform routing: 1/N (traces)")
def _consecutive(m):
    return m.get("consecutive_N"), m.get("consecutive_ND")


@register("coactivation", "C_l(i -> j) = N_l(i and j) / N_l(i), an experts x experts matrix (traces)")
def _coactivation(m):
    return m.get("coactivation_NEE"), None
