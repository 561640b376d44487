"""The study's claims as data, and their verdicts computed from a sweep.

A metric claim compares `arm` with `baseline` (Δ = arm − baseline, as the paper reports changes against
`full`) and expects the arm to be `better` or `worse`. Of its metrics, the first one both arms have in
every seed decides (the primary); the others are shown as secondary evidence. The estimate and its
confidence interval come from `capability.capability_table` on the two arms (percentile bootstrap over
seeds and items, seeds paired by name). With the effect signed so that + is the claimed direction:

  supported     the CI lies above 0        contradicted  the CI lies below 0
  inconclusive  the CI contains 0, or there is nothing to resample (one seed and one item)
  not tested    an arm is not in the sweep, or no metric of the claim was evaluated (named)

A routing claim (C4) asks whether the removed domain's cross-arm JSD against the reference (mean over
MoE layers, at the last analysed step) is the largest of all domains, separately in every seed that
has routing: supported if it is in every seed, contradicted if in none, inconclusive otherwise. This is
a count over seeds, not an interval: with one seed it carries no uncertainty (the report says how many
seeds decided).
"""

from __future__ import annotations

import dataclasses

from mixlab.configlib import ConfigError
from mixlab.evals import capability
from mixlab.report import scores
from mixlab.report.load import Sweep

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED = "supported", "contradicted", "inconclusive", "not tested"

# Free-form exact match (a worked solution allowed) when task evals have it, then answer-only exact
# match, else held-out answer-only math.
MATH = ("tasks:math_free", "tasks:math", "bpb/math")
SAME_MATH = (
    "math tokens are held at full's (the audit table shows the realised tokens), so a gain is not more math"
)


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    text: str
    arm: str  # the arm whose change is measured ...
    baseline: str  # ... against this one
    expect: str  # "better" | "worse": the claimed direction of arm vs baseline
    metrics: tuple[str, ...]  # `bpb/<domain>` or `tasks:<suite>`; the first present in both arms decides
    note: str = ""


@dataclasses.dataclass(frozen=True)
class RoutingClaim:
    id: str
    text: str
    arm: str
    baseline: str  # the routing reference the JSD is measured against
    domain: str  # the domain the arm removes
    note: str = ""


CLAIMS: tuple[Claim | RoutingClaim, ...] = (
    Claim(
        "C1",
        "code helps programming",
        "no_code",
        "full",
        "worse",
        ("bpb/code", "tasks:output_pred", "tasks:code_gen", "tasks:humaneval"),
        "held-out pure code; output prediction, code generation and HumanEval when task evals exist",
    ),
    Claim(
        "C2",
        "code competes with math at equal math tokens",
        "no_code_hold_math",
        "full",
        "better",
        MATH,
        SAME_MATH,
    ),
    Claim(
        "C2b",
        "code competes with math at equal math tokens (freed share to text)",
        "no_code_fill_text",
        "full",
        "better",
        MATH,
        SAME_MATH,
    ),
    Claim(
        "C2p",
        "removing code improves math (the paper's arm)",
        "no_code",
        "full",
        "better",
        MATH,
        "proportional renormalisation also adds math tokens: confounded (see C5)",
    ),
    Claim(
        "C3",
        "structured traces help math at equal math tokens",
        "scaffold",
        "full",
        "better",
        ("tasks:math_free", "tasks:math", "tasks:math_extrap"),
        "exact match on generated problems, free-form first (the model may write the worked solution "
        "it learned before its answer); bpb/math and answer-only exact match measure the answer-only "
        "format scaffold never trains on, not math; without task evals the claim is not tested",
    ),
    RoutingClaim("C4-code", "routing shifts most for the removed domain (code)", "no_code", "full", "code"),
    RoutingClaim("C4-math", "routing shifts most for the removed domain (math)", "no_math", "full", "math"),
    Claim(
        "C5",
        "part of the paper's effect is extra math tokens",
        "no_code",
        "no_code_hold_math",
        "better",
        MATH,
        "both remove code; only no_code adds math tokens, so a gain here is the extra-math part of C2p",
    ),
)


def _interval_verdict(expect: str, gain_ci: list[float], no_variance: bool) -> str:
    want = 1.0 if expect == "better" else -1.0
    lo, hi = sorted(want * x for x in gain_ci)
    if no_variance:
        return INCONCLUSIVE
    return SUPPORTED if lo > 0 else CONTRADICTED if hi < 0 else INCONCLUSIVE


def _base(claim) -> dict:
    return {**dataclasses.asdict(claim), "kind": "routing" if isinstance(claim, RoutingClaim) else "metric"}


def metric_claim(
    claim: Claim, sweep: Sweep, seq_domains: set[str], confidence: float, replicates: int
) -> dict:
    out = {**_base(claim), "comparison": f"{claim.arm} vs {claim.baseline}"}
    if missing := [a for a in (claim.arm, claim.baseline) if not sweep.of(a)]:
        return {**out, "verdict": NOT_TESTED, "reason": f"arm {' and '.join(missing)} not in the sweep"}
    results: dict[str, dict] = {claim.baseline: {}, claim.arm: {}}
    absent: dict[str, list[str]] = {}
    for m in claim.metrics:
        got = {a: {str(r.seed): scores.claim_items(r, m, seq_domains) for r in sweep.of(a)} for a in results}
        if lacking := [f"{a}/seed_{s}" for a, by in got.items() for s, v in by.items() if v is None]:
            absent[m] = lacking
            continue
        for a, by in got.items():
            for s, items in by.items():
                results[a].setdefault(s, {})[m] = items
    available = [m for m in claim.metrics if m not in absent]

    def lacks(ms) -> str:
        return "; ".join(f"{scores.describe(m)} missing for {', '.join(absent[m])}" for m in ms)

    if not available:
        return {**out, "verdict": NOT_TESTED, "reason": lacks(absent)}
    try:
        table, _ = capability.capability_table(
            results,
            claim.baseline,
            confidence=confidence,
            replicates=replicates,
            dimensions={m: m for m in available},
        )
    except ValueError as e:
        raise ConfigError(f"claim {claim.id} ({claim.arm} vs {claim.baseline}): {e}") from None
    estimates = []
    for m in available:
        row = next(r for r in table["rows"] if r["kind"] == "metric" and r["name"] == m)
        a, b = row["arms"][claim.arm], row["arms"][claim.baseline]
        sign = 1.0 if row["higher_is_better"] else -1.0
        n_items = len(next(iter(results[claim.baseline].values()))[m])
        one = n_items == 1 and all(len(table["seeds"][x]) == 1 for x in (claim.arm, claim.baseline))
        gain_ci = sorted(sign * x for x in a["delta_abs_ci"])
        estimates.append(
            {
                "metric": m,
                "label": scores.describe(m),
                "higher_is_better": row["higher_is_better"],
                "arm_score": a["score"],
                "arm_score_ci": a["score_ci"],
                "baseline_score": b["score"],
                "baseline_score_ci": b["score_ci"],
                "delta_abs": a["delta_abs"],
                "delta_abs_ci": a["delta_abs_ci"],
                "gain_abs": sign * a["delta_abs"],
                "gain_abs_ci": gain_ci,
                "gain_pct": a["gain_pct"],
                "gain_pct_ci": a["gain_pct_ci"],
                "seeds": {x: table["seeds"][x] for x in (claim.arm, claim.baseline)},
                "items": n_items,
                "verdict": _interval_verdict(claim.expect, gain_ci, one),
                "no_variance": one,
            }
        )
    # Metrics listed before the primary explain the fallback; missing ones after it are only listed.
    before = [m for m in claim.metrics[: claim.metrics.index(available[0])] if m in absent]
    out.update(verdict=estimates[0]["verdict"], primary=estimates[0], secondary=estimates[1:])
    out["not_evaluated"] = [scores.describe(m) for m in claim.metrics if m in absent]
    reasons = []
    if before:
        reasons.append(f"{lacks(before)}; decided by {estimates[0]['label']}")
    if estimates[0]["no_variance"]:
        reasons.append("one seed and one item: nothing to resample, no interval")
    out["reason"] = "; ".join(reasons)
    return out


def routing_claim(claim: RoutingClaim, routing: dict) -> dict:
    out = {**_base(claim), "comparison": f"{claim.arm} vs {claim.baseline} (routing)"}
    if not routing.get("seeds"):
        return {**out, "verdict": NOT_TESTED, "reason": routing.get("missing") or "no routing analysis"}
    per_seed, skipped = [], []
    for rs in routing["seeds"]:
        jsd = rs["jsd"].get(claim.arm)
        if rs["reference"] != claim.baseline:
            skipped.append(
                f"seed {rs['seed']}: routing reference is {rs['reference']!r}, not {claim.baseline!r}"
            )
        elif jsd is None:
            skipped.append(f"seed {rs['seed']}: arm {claim.arm} not in the routing analysis")
        elif claim.domain not in jsd or len(jsd) < 2:
            skipped.append(f"seed {rs['seed']}: no JSD for domain {claim.domain!r} (or no other domain)")
        else:
            others = {d: v for d, v in jsd.items() if d != claim.domain}
            top = max(others, key=others.get)
            per_seed.append(
                {
                    "seed": rs["seed"],
                    "step": rs["step"].get(claim.arm),
                    "jsd_domain": jsd[claim.domain],
                    "largest_other": top,
                    "jsd_largest_other": others[top],
                    "margin": jsd[claim.domain] - others[top],
                    "rank": 1 + sum(v > jsd[claim.domain] for v in others.values()),
                    "largest": jsd[claim.domain] > others[top],
                }
            )
    if not per_seed:
        return {**out, "verdict": NOT_TESTED, "reason": "; ".join(skipped)}
    k = sum(p["largest"] for p in per_seed)
    verdict = SUPPORTED if k == len(per_seed) else CONTRADICTED if k == 0 else INCONCLUSIVE
    return {**out, "verdict": verdict, "per_seed": per_seed, "largest_in": k, "reason": "; ".join(skipped)}


def evaluate(
    sweep: Sweep, seq_domains: set[str], routing: dict, *, confidence: float, replicates: int = 2000
) -> list[dict]:
    return [
        routing_claim(c, routing)
        if isinstance(c, RoutingClaim)
        else metric_claim(c, sweep, seq_domains, confidence, replicates)
        for c in CLAIMS
    ]


def estimate_text(claim: dict, confidence: float) -> str:
    """The claim's estimate in one phrase: gain % (+ = arm better) with its CI, or the routing count."""
    if claim["verdict"] == NOT_TESTED:
        return "—"
    if claim["kind"] == "routing":
        margins = ", ".join(f"{p['margin']:+.4f}" for p in claim["per_seed"])
        return (
            f"largest in {claim['largest_in']}/{len(claim['per_seed'])} seeds "
            f"(JSD({claim['domain']}) − next largest, bits: {margins})"
        )
    return gain_text(claim["primary"], confidence)


def gain_text(e: dict, confidence: float) -> str:
    pct = round(100 * confidence)
    if e["gain_pct"] is None:
        lo, hi = e["gain_abs_ci"]
        return f"gain {e['gain_abs']:+.4f} [{lo:+.4f}, {hi:+.4f}] (abs., {pct}% CI)"
    lo, hi = e["gain_pct_ci"]
    scores_ = f"{e['arm_score']:.3f} vs {e['baseline_score']:.3f}"
    return f"gain {e['gain_pct']:+.1f}% [{lo:+.1f}, {hi:+.1f}] ({pct}% CI; {scores_})"


def sentences(claims: list[dict], confidence: float) -> list[str]:
    """'What the data shows': one templated sentence per claim, then the tally."""
    out = []
    for c in claims:
        head = f"{c['id']} ({c['text']})"
        v = c["verdict"]
        if v == NOT_TESTED:
            out.append(f"{head} was not tested: {c['reason']}.")
        elif c["kind"] == "routing":
            p = c["per_seed"]
            out.append(
                f"{head} is {v}: in {c['largest_in']} of {len(p)} seeds the JSD of {c['domain']} between "
                f"{c['arm']} and {c['baseline']} is the largest of all domains (mean margin "
                f"{sum(x['margin'] for x in p) / len(p):+.4f} bits)."
            )
        else:
            e = c["primary"]
            direction = "better" if e["gain_abs"] > 0 else "worse" if e["gain_abs"] < 0 else "no different"
            qualifier = {
                SUPPORTED: "and its interval excludes 0 in the claimed direction",
                CONTRADICTED: "and its interval excludes 0 against the claim",
                INCONCLUSIVE: "but its interval contains 0" if not e["no_variance"] else "with no interval",
            }[v]
            out.append(
                f"{head} is {v}: on {e['label']}, {c['arm']} is {direction} than {c['baseline']} "
                f"({gain_text(e, confidence)}), {qualifier}."
            )
    tally = {
        v: sum(c["verdict"] == v for c in claims) for v in (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED)
    }
    out.append(f"Of {len(claims)} claims: " + ", ".join(f"{n} {v}" for v, n in tally.items()) + ".")
    return out
