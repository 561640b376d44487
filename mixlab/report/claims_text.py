"""The claims' estimates and verdicts in words: the claims table cells and 'What the data shows'.

Nothing is computed here but formatting of what `claims.evaluate` returned (report.json holds it)."""

from __future__ import annotations

from mixlab.report.claims import INCONCLUSIVE, NOT_TESTED, VERDICTS


def _p(x) -> str:
    return "n/a" if x is None else f"{x:.2g}"


def estimate_text(e: dict, kind: str = "metric") -> str:
    """One estimate: the gain (+ = the arm better, or the claimed routing direction), its seed-level
    interval, the seeds and the p-values."""
    if e.get("gain") is None:
        return "—"
    n = len(e["seeds"]["paired"])
    ci = e.get("gain_pct_ci") if e.get("gain_pct") is not None else e.get("gain_ci")
    if kind == "metric" and e.get("gain_pct") is not None:
        head = f"gain {e['gain_pct']:+.1f}%"
        interval = f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else ""
        tail = f"; {e['arm_score']:.3f} vs {e['baseline_score']:.3f}"
    else:
        unit = " bits" if kind == "routing" else ""
        head = f"{'margin' if kind == 'routing' else 'gain'} {e['gain']:+.4f}{unit}"
        interval = f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""
        tail = f"; J = {e['overlap']:.2f}" if e.get("overlap") is not None else ""
    seeds = f"{n} seeds" if ci else f"{n} seed{'s' * (n != 1)}, no seed-level interval"
    p = f"; p {_p(e.get('p'))}" + (f", Holm {_p(e['p_holm'])}" if "p_holm" in e else "") if ci else ""
    correct = e.get("correct")
    corr = f"; correct {correct['arm']:.0f} vs {correct['baseline']:.0f}" if correct else ""
    return f"{head}{interval} ({seeds}{p}{tail}{corr})"


def readings_text(c: dict) -> str:
    return "<br>".join(
        f"{r['expect']} ({r['source']})" + (f" → **{r['verdict']}**" if "verdict" in r else "")
        for r in c["readings"]
    )


def _direction(e: dict) -> str:
    g = e["gain"]
    return "better" if g > 0 else "worse" if g < 0 else "no different"


def sentence(c: dict) -> str:
    head = f"{c['id']} ({c['text']})"
    if c["verdict"] == NOT_TESTED:
        return f"{head} was not tested: {c['reason']}."
    e = c["primary"]
    if c["kind"] == "metric":
        body = f"on {e['label']}, {c['arm']} is {_direction(e)} than {c['baseline']} ({estimate_text(e)})"
    elif c["kind"] == "routing":
        body = (
            f"the cross-arm JSD of {c['domain']} minus the larger of the largest non-sibling JSD and the "
            f"A/A JSD is {estimate_text(e, 'routing')}"
        )
    else:
        body = f"{e['label']}: {estimate_text(e, 'competition')}"
    why = f" ({c['undecided']})" if c.get("undecided") else ""
    if len(c["readings"]) > 1:
        per = "; ".join(f"'{r['expect']}' ({r['source']}): {r['verdict']}" for r in c["readings"])
        supported = [r["expect"] for r in c["readings"] if r["verdict"] == "supported"]
        which = f"the data supports '{supported[0]}'" if supported else "the data supports neither reading"
        return f"{head}: {body}; readings — {per}; {which}{why}."
    return f"{head} is {c['verdict']}{why}: {body}."


def summary(result: dict) -> list[str]:
    """'What the data shows': a sentence per claim, the A/A noise floor, the tally."""
    claims = result["claims"]
    out = [sentence(c) for c in claims]
    for e in result["aa"]:
        out.append(
            f"A/A noise floor ({e['metric']}: full with other seeds vs full): {estimate_text(e)} — "
            f"{e['verdict']}."
        )
    tally = {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS}
    out.append(
        f"Of {len(claims)} claims: " + ", ".join(f"{n} {v}" for v, n in tally.items()) + f" (Holm over "
        f"{result['holm_m']} primary tests at α = {result['alpha']:.2g}; secondary metrics are exploratory)."
    )
    if all(c["verdict"] in (INCONCLUSIVE, NOT_TESTED) for c in claims) and claims:
        out.append("No claim is decided by this sweep.")
    return out
