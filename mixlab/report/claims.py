"""A study's claims as data, and their verdicts computed from a sweep at the seed level.

The claims belong to the study: its config file defines `claims(arg)` beside `sweep` (see
configs/code_math_study.py), from these three kinds:

  Claim            arm vs baseline on metrics (`bpb/<domain>`, `tasks:<suite>`, `answer_bpb/<suite>`,
                   `solution_bpb/<suite>`, `choice_prob/<suite>`); the first metric every run of both
                   arms has decides (the primary), the others are exploratory secondaries.
  RoutingClaim     the removed domain's cross-arm JSD (routing of arm vs baseline, layer mean at the last
                   analysed step) exceeds that of every non-sibling domain and the seed-to-seed JSD of
                   the same domain (the A/A arm vs the baseline). Statistic per seed: the smaller margin.
  CompetitionClaim g(target <- source) of the routing analysis' competition/synergy index (mixlab/
                   analysis/compare.py): < 0 competition, > 0 synergy; the reference's expert overlap
                   J(target, source) is shown beside it.

Each claim has one or more `Reading`s: an expected direction with the quoted source it comes from;
where two sources disagree, each reading gets its verdict. Every primary statistic is a per-seed paired
difference tested with `stats.paired_t` (signed so that + is the arm better, or the claimed routing
direction); Holm's correction runs over all primary claims at α = 1 − confidence:

  supported     Holm-adjusted p < α, in the reading's direction    contradicted  ... against it
  inconclusive  adjusted p >= α; or fewer than 3 paired seeds ("no seed-level interval"); or an
                accuracy with fewer than MIN_CORRECT correct items in either arm (mean over seeds)
  not tested    an arm is not in the sweep, or no metric of the claim was evaluated (named)

Secondary metrics carry their own unadjusted interval and p and no verdict: exploratory. The A/A
comparison (the same config, other seeds) is computed on every primary metric as the noise floor.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mixlab.report import scores, stats
from mixlab.report.load import RunData, Sweep

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED = "supported", "contradicted", "inconclusive", "not tested"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED)
MIN_CORRECT = 30  # an accuracy decides nothing below this many correct items (mean over seeds)


@dataclasses.dataclass(frozen=True)
class Reading:
    expect: str  # metric claims: "better" | "worse" (arm vs baseline)
    source: str  # where the expectation comes from, quoted


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    text: str
    arm: str
    baseline: str
    readings: tuple[Reading, ...]
    metrics: tuple[str, ...]
    measured_text: str = ""  # the wording used when no task metric of the claim clears its baseline rate
    note: str = ""


@dataclasses.dataclass(frozen=True)
class RoutingClaim:
    id: str
    text: str
    arm: str
    baseline: str  # the routing reference
    domain: str  # the domain the arm removes
    siblings: tuple[str, ...] = ()  # domains that share its content, excluded from the comparison
    aa_arm: str = ""  # the baseline's config with other seeds: the seed-to-seed JSD
    source: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class CompetitionClaim:
    id: str
    text: str
    arm: str
    baseline: str
    target: str  # the domain whose loss moves ...
    source_domain: str  # ... when this domain's share changes (the arm's intervention)
    expect: str  # "competition" (g < 0) | "synergy" (g > 0)
    source: str = ""
    note: str = ""


def _kind(claim) -> str:
    return {Claim: "metric", RoutingClaim: "routing", CompetitionClaim: "competition"}[type(claim)]


def _base(claim) -> dict:
    out = {**dataclasses.asdict(claim), "kind": _kind(claim)}
    if isinstance(claim, RoutingClaim | CompetitionClaim):
        expect = "claimed direction" if isinstance(claim, RoutingClaim) else claim.expect
        out["readings"] = [{"expect": expect, "source": claim.source}]
    comparison = f"{claim.arm} vs {claim.baseline}"
    out["comparison"] = comparison + ("" if isinstance(claim, Claim) else " (routing)")
    return out


def seed_means(runs: list[RunData], metric: str, seq_domains: set[str]) -> dict[str, tuple] | None:
    """{seed: (mean score, number of items, number correct)} or None when a run lacks the metric."""
    out = {}
    for r in runs:
        items = scores.claim_items(r, metric, seq_domains)
        if items is None:
            return None
        v = np.asarray(list(items.values()), dtype=np.float64)
        out[str(r.seed)] = (float(v.mean()), int(v.size), float(v.sum()))
    return out


def compare(sweep: Sweep, arm: str, baseline: str, metric: str, seq_domains: set[str], confidence: float):
    """The seed-level estimate of arm vs baseline on one metric, or None when a run lacks it."""
    a, b = (seed_means(sweep.of(x), metric, seq_domains) for x in (arm, baseline))
    if a is None or b is None:
        return None
    higher = scores.higher_is_better(metric)
    sign = 1.0 if higher else -1.0
    paired = sorted(set(a) & set(b), key=int)
    t = stats.paired_t([sign * (a[s][0] - b[s][0]) for s in paired], confidence)
    a_mean, b_mean = (float(np.mean([x[s][0] for s in x])) for x in (a, b))
    out = {
        "metric": metric,
        "label": scores.describe(metric),
        "higher_is_better": higher,
        "arm_score": a_mean,
        "baseline_score": b_mean,
        "seeds": {"arm": sorted(a, key=int), "baseline": sorted(b, key=int), "paired": paired},
        "per_seed_gain": {s: sign * (a[s][0] - b[s][0]) for s in paired},
        "items": a[next(iter(a))][1],
        "gain": t["mean"],
        "gain_ci": t["ci"],
        "p": t["p"],
        "gain_pct": None,
        "gain_pct_ci": None,
    }
    if b_mean and t["mean"] is not None:
        out["gain_pct"] = 100 * t["mean"] / abs(b_mean)
        if t["ci"]:
            out["gain_pct_ci"] = [100 * x / abs(b_mean) for x in t["ci"]]
    if metric.startswith("tasks:"):
        out["correct"] = {
            "arm": float(np.mean([x[2] for x in a.values()])),
            "baseline": float(np.mean([x[2] for x in b.values()])),
        }
    return out


def _metric_claim(claim: Claim, sweep: Sweep, seq_domains: set[str], confidence: float) -> dict:
    out = _base(claim)
    if missing := [a for a in (claim.arm, claim.baseline) if not sweep.of(a)]:
        return {**out, "verdict": NOT_TESTED, "reason": f"arm {' and '.join(missing)} not in the sweep"}
    estimates, absent = [], []
    for m in claim.metrics:
        e = compare(sweep, claim.arm, claim.baseline, m, seq_domains, confidence)
        (estimates if e else absent).append(e or scores.describe(m))
    out["not_evaluated"] = absent
    if not estimates:
        return {**out, "verdict": NOT_TESTED, "reason": f"not evaluated: {', '.join(absent)}"}
    out["primary"], out["secondary"] = estimates[0], estimates[1:]
    return out


def _routing_claim(claim: RoutingClaim, routing: dict, confidence: float) -> dict:
    out = _base(claim)
    per_seed, skipped = [], []
    for rs in routing.get("seeds") or []:
        jsd = rs["jsd"].get(claim.arm) or {}
        if claim.arm not in rs["jsd"]:
            skipped.append(f"seed {rs['seed']}: arm {claim.arm} not in the routing analysis")
            continue
        if rs["reference"] != claim.baseline:
            skipped.append(f"seed {rs['seed']}: routing reference is {rs['reference']!r}")
            continue
        others = {d: v for d, v in jsd.items() if d != claim.domain and d not in claim.siblings}
        if claim.domain not in jsd or not others:
            skipped.append(
                f"seed {rs['seed']}: no JSD of {claim.domain!r} (or of another domain) for {claim.arm}"
            )
            continue
        top = max(others, key=others.get)
        row = {
            "seed": rs["seed"],
            "jsd_domain": jsd[claim.domain],
            "largest_non_sibling": top,
            "margin_non_sibling": jsd[claim.domain] - others[top],
            "largest_of_all": jsd[claim.domain] >= max(jsd.values()),
        }
        aa = (rs["jsd"].get(claim.aa_arm) or {}).get(claim.domain) if claim.aa_arm else None
        row["jsd_aa"] = aa
        row["margin_aa"] = None if aa is None else jsd[claim.domain] - aa
        margins = [m for m in (row["margin_non_sibling"], row["margin_aa"]) if m is not None]
        row["statistic"] = min(margins)
        per_seed.append(row)
    if not per_seed:
        reason = "; ".join(skipped) or routing.get("missing") or "no routing analysis"
        return {**out, "verdict": NOT_TESTED, "reason": reason}
    t = stats.paired_t([p["statistic"] for p in per_seed], confidence)
    without_aa = [p["seed"] for p in per_seed if p["margin_aa"] is None]
    out["primary"] = {
        "label": "min(JSD − largest non-sibling JSD, JSD − A/A JSD), bits",
        "gain": t["mean"],
        "gain_ci": t["ci"],
        "p": t["p"],
        "per_seed": per_seed,
        "seeds": {"paired": [str(p["seed"]) for p in per_seed]},
    }
    notes = skipped + (
        [f"no A/A routing for seeds {without_aa}: non-sibling margin only"] if without_aa else []
    )
    out["reason"] = "; ".join(notes)
    return out


def _competition_claim(claim: CompetitionClaim, routing: dict, confidence: float) -> dict:
    out = _base(claim)
    want = -1.0 if claim.expect == "competition" else 1.0
    per_seed, skipped = [], []
    for rs in routing.get("seeds") or []:
        comp = (rs.get("competition") or {}).get(claim.arm)
        if claim.arm not in rs["jsd"] and not comp:
            skipped.append(f"seed {rs['seed']}: arm {claim.arm} not in the routing analysis")
            continue
        if rs["reference"] != claim.baseline or not comp:
            skipped.append(f"seed {rs['seed']}: no competition index of {claim.arm} vs {claim.baseline}")
            continue
        if comp["intervention"] != claim.source_domain or claim.target not in comp["effects"]:
            skipped.append(
                f"seed {rs['seed']}: intervention {comp['intervention']!r}, not {claim.source_domain!r}"
            )
            continue
        e = comp["effects"][claim.target]
        per_seed.append({"seed": rs["seed"], "g": e["g"], "delta_loss": e["delta_loss"], "csi": e.get("csi")})
        per_seed[-1]["overlap"] = (comp.get("overlap") or {}).get(claim.target)
    if not per_seed:
        return {**out, "verdict": NOT_TESTED, "reason": "; ".join(skipped) or "no routing analysis"}
    t = stats.paired_t([want * p["g"] for p in per_seed], confidence)
    overlaps = [p["overlap"] for p in per_seed if p["overlap"] is not None]
    out["primary"] = {
        "label": f"g({claim.target} ← {claim.source_domain}) signed so + is {claim.expect}",
        "gain": t["mean"],
        "gain_ci": t["ci"],
        "p": t["p"],
        "per_seed": per_seed,
        "overlap": float(np.mean(overlaps)) if overlaps else None,
        "seeds": {"paired": [str(p["seed"]) for p in per_seed]},
    }
    out["reason"] = "; ".join(skipped)
    return out


def _reading_verdict(expect: str, gain: float, p_adj: float | None, alpha: float) -> str:
    if p_adj is None or p_adj >= alpha:
        return INCONCLUSIVE
    want = -1.0 if expect == "worse" else 1.0  # routing/competition statistics are pre-signed
    return SUPPORTED if want * gain > 0 else CONTRADICTED


def _why_undecided(e: dict) -> str:
    n = len(e["seeds"]["paired"])
    if n < stats.MIN_SEEDS:
        return f"{n} paired seed(s): no seed-level interval (needs {stats.MIN_SEEDS})"
    correct = e.get("correct")
    if correct and max(correct.values()) < MIN_CORRECT:
        return f"fewer than {MIN_CORRECT} correct items in either arm: no accuracy verdict"
    return ""


def evaluate(
    claim_list, sweep: Sweep, seq_domains: set[str], routing: dict, *, confidence: float, aa_arm: str = ""
) -> dict:
    """{"claims": [...], "aa": [...], "alpha", "holm_m"}: every claim's estimate and verdict."""
    out = []
    for c in claim_list:
        if isinstance(c, Claim):
            out.append(_metric_claim(c, sweep, seq_domains, confidence))
        elif isinstance(c, RoutingClaim):
            out.append(_routing_claim(c, routing, confidence))
        else:
            out.append(_competition_claim(c, routing, confidence))
    alpha = 1 - confidence
    decidable = {}
    for c in out:
        if e := c.get("primary"):
            c["undecided"] = _why_undecided(e)
            decidable[c["id"]] = None if c["undecided"] else e["p"]
    adjusted = stats.holm(decidable)
    for c in out:
        if "primary" not in c:
            continue
        e = c["primary"]
        e["p_holm"] = adjusted.get(c["id"])
        for r in c["readings"]:
            r["verdict"] = _reading_verdict(r["expect"], e["gain"], e["p_holm"], alpha)
        c["verdict"] = c["readings"][0]["verdict"]
        c["reason"] = "; ".join(filter(None, [c["undecided"], c.get("reason", "")]))
    aa = []
    if aa_arm and sweep.of(aa_arm):
        seen = set()
        for c in out:
            m = (c.get("primary") or {}).get("metric")
            if c["kind"] == "metric" and m and m not in seen:
                seen.add(m)
                if e := compare(sweep, aa_arm, sweep.reference, m, seq_domains, confidence):
                    e["verdict"] = (
                        "no seed-level interval"
                        if e["p"] is None
                        else "differs (p < α, a false positive at this rate)"
                        if e["p"] < alpha
                        else "no difference"
                    )
                    aa.append(e)
    return {"claims": out, "aa": aa, "alpha": alpha, "holm_m": sum(p is not None for p in decidable.values())}


def reword(claims: list[dict], task_rates: dict[str, float]) -> None:
    """A claim with a `measured_text` keeps its own wording only when one of its task metrics scores
    above its constant-answer rate in the baseline, with at least MIN_CORRECT correct items."""
    for c in claims:
        if not c.get("measured_text") or "primary" not in c:
            continue
        clears = [
            e["metric"]
            for e in [c["primary"], *c.get("secondary", [])]
            if e.get("correct")
            and e["correct"]["baseline"] >= MIN_CORRECT
            and e["baseline_score"] > task_rates.get(e["metric"].removeprefix("tasks:"), 0.0)
        ]
        c["paper_text"] = c["text"]
        if not clears:
            c["text"] = c["measured_text"]
            c["reworded"] = "no programming task scores above its constant-answer rate: worded as measured"
