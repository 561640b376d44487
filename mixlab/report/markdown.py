"""report.md, rendered from the report dict alone (what report.json holds): nothing is computed here but
formatting, so the Markdown and the JSON cannot disagree."""

from __future__ import annotations

import os

from mixlab.analysis import registry
from mixlab.evals import capability
from mixlab.report import claims_text


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows),
    ]


def _num(x, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _fig(report: dict, name: str, alt: str) -> list[str]:
    path = report["figures"].get(name)
    return [f"![{alt}]({path})", ""] if path else [f"_No data for {alt}._", ""]


def claims_section(report: dict) -> list[str]:
    conf, holm = round(100 * report["confidence"]), report["holm"]
    rows = []
    for c in report["claims"]:
        e = c.get("primary") or {}
        secondary = [f"{x['label']}: {claims_text.estimate_text(x)}" for x in c.get("secondary", [])]
        if c.get("not_evaluated"):
            secondary.append(f"not evaluated: {', '.join(c['not_evaluated'])}")
        verdict = f"**{c['verdict']}**" + (f" ({c['reason']})" if c.get("reason") else "")
        text = c["text"] + (f" (paper: '{c['paper_text']}'; {c['reworded']})" if c.get("reworded") else "")
        rows.append(
            [
                c["id"],
                text,
                c["comparison"],
                claims_text.readings_text(c),
                e.get("label", "—"),
                claims_text.estimate_text(e, c["kind"]) if e else "—",
                verdict,
                "<br>".join(secondary) or "—",
                c.get("note") or "",
            ]
        )
    head = ["id", "claim", "comparison", "expected (source)", "primary metric", "estimate", "verdict"]
    head += ["exploratory secondaries", "note"]
    lines = [
        "## Claims",
        "",
        f"Estimates are per-seed paired differences (arm − baseline, signed so that + is the arm better "
        f"or the claimed routing direction): their mean, its {conf}% t interval over seeds, p and Holm's "
        f"adjusted p over the {holm['m']} primary tests. A reading is supported when the adjusted p is "
        f"below α = {holm['alpha']:.2g} in its direction, contradicted when against it, inconclusive "
        "otherwise (also with fewer than 3 paired seeds, and for an accuracy with fewer than 30 correct "
        "items). Secondary metrics carry unadjusted intervals: exploratory. Rules: mixlab/report/claims.py; "
        f"the claims: `claims()` of `{report['config'].partition(':')[0]}`.",
        "",
        *_table(head, rows),
        "",
    ]
    if report["aa"]:
        aa_rows = [[e["label"], claims_text.estimate_text(e), e["verdict"]] for e in report["aa"]]
        lines += [
            f"### A/A noise floor: `{report['aa_arm']}` (the reference's config, other seeds) vs "
            f"`{report['reference']}`",
            "",
            *_table(["primary metric", "estimate", "reading"], aa_rows),
            "",
        ]
    return lines


def floors_section(report: dict) -> list[str]:
    rates = report.get("task_rates") or {}
    if not rates:
        return []
    rows = [
        [s, "n/a" if r is None else f"{r['rate']:.3f}", "" if r is None else f"`{r['answer']}`"]
        for s, r in rates.items()
    ]
    return [
        "### Floors",
        "",
        "Constant-answer rate of every exact-match suite (the accuracy of always giving its most frequent "
        "gold answer); chance of `choice_prob` is 1/4 (4 choices).",
        "",
        *_table(["suite", "constant-answer rate", "that answer"], rows),
        "",
    ]


def decision_section(report: dict) -> list[str]:
    lines = []
    for d in report.get("decision") or []:
        rows = [
            [m["metric"], len(m["pairs"]), _num(m["accuracy"], ".2f"), ", ".join(m["arms"])]
            for m in d["metrics"]
        ]
        lines += [
            f"## Does `{d['smaller']}` predict this scale?",
            "",
            f"Decision accuracy: the share of arm pairs ordered the same at both scales on each primary "
            f"metric (0.5 is a coin; ties count 1/2): **{_num(d['accuracy'], '.2f')}** over {d['pairs']} "
            f"pairs (`{d['smaller_path']}`).",
            "",
            *_table(["metric", "pairs", "decision accuracy", "arms in both"], rows),
            "",
        ]
    return lines


def runs_section(report: dict) -> list[str]:
    rows = [
        [
            a["arm"],
            a["mixture"],
            ", ".join(map(str, a["seeds"])),
            ", ".join(map(str, a["steps"])),
            ", ".join(f"{t:,}" for t in a["tokens"]),
            _num(a["final_train_loss"]),
            ", ".join(f"{s}: {_num(v)}" for s, v in a["final_train_loss_by_seed"].items()),
            a["task_evals"],
        ]
        for a in report["runs"]["arms"]
    ]
    head = ["arm", "mixture", "seeds", "steps", "tokens", "final train loss", "by seed", "task evals"]
    lines = ["## Runs", "", *_table(head, rows), ""]
    lines += [f"> ⚠ skipped: {s}" for s in report["runs"]["skipped"]]
    return [*lines, ""] if report["runs"]["skipped"] else lines


def capability_section(report: dict) -> list[str]:
    cap = report["capability"]
    seq = [d for d, v in cap["bpb_items"].items() if v == "sequences"]
    agg = [d for d, v in cap["bpb_items"].items() if v != "sequences"]
    lines = ["## Capability", "", "### Held-out bits per byte", ""]
    lines.append(
        "Items: "
        + "; ".join(
            filter(
                None,
                [
                    f"eval sequences for {', '.join(seq)}" if seq else "",
                    f"one aggregate per domain for {', '.join(agg)} (no per-sequence lists: no item variance)"
                    if agg
                    else "",
                ],
            )
        )
        + ". Scores are means over seeds and items.\n"
    )
    lines += [capability.markdown(cap["bpb"])]
    if cap.get("answers"):
        lines += ["### Answer-level likelihoods", "", capability.markdown(cap["answers"])]
    lines += ["### Generation tasks", ""]
    lines += (
        [capability.markdown(cap["tasks"])] if cap["tasks"] else ["No task evals for the reference arm.", ""]
    )
    lines += [f"Note: {n}." for n in cap["notes"]] + ([""] if cap["notes"] else [])
    lines += floors_section(report)
    return lines + _fig(report, "capability", "gain % vs reference per dimension and metric")


def curves_section(report: dict) -> list[str]:
    curves = report["loss_curves"]
    arms = list(dict.fromkeys(a for per in curves.values() for a in per))
    rows = [[a, *(_num(curves[d][a]["loss"][-1]) if a in curves[d] else "—" for d in curves)] for a in arms]
    return [
        "## Held-out loss",
        "",
        "Loss (nats/token) at each run's last eval step, mean over seeds; the figure shows every eval step.",
        "",
        *_table(["arm", *curves], rows),
        "",
        *_fig(report, "loss_curves", "held-out loss per domain over steps"),
    ]


def audit_section(report: dict) -> list[str]:
    au = report["audit"]
    doms = au["domains"]
    rows = []
    for arm, a in au["arms"].items():
        cells = [
            f"{100 * (a['domains'].get(d, {}).get('requested_share') or 0):.1f} / "
            f"{100 * (a['domains'].get(d, {}).get('realised_share') or 0):.1f}"
            for d in doms
        ]
        rows.append(
            [
                arm,
                a["seeds"],
                *cells,
                f"{a['run_tokens']:,.0f}" if a["run_tokens"] else "n/a",
                _num(a["max_window_error_pp"], ".2f"),
            ]
        )
    lines = [
        "## Realised mixture",
        "",
        "Token share per domain, requested / realised (%), from each run's data_audit.json "
        "(mean over seeds).",
        "",
        *_table(["arm", "seeds", *doms, "run tokens", "worst window error (pp)"], rows),
        "",
    ]
    if au["without_audit"]:
        lines += [f"No data_audit.json: {', '.join(au['without_audit'])}.", ""]
    return lines + _fig(report, "audit", "requested vs realised mixture")


def code_share_section(report: dict) -> list[str]:
    cs = report["code_share"]
    rows = [
        [
            a + ("" if a in cs["family"] else " (not on the curve)"),
            _num(100 * v["code_share"], ".1f") if v["code_share"] is not None else "n/a",
            v["seeds"],
            *(_num(v.get(m)) for m in cs["metrics"]),
        ]
        for a, v in cs["by_arm"].items()
    ]
    lines = [
        "## Code-share curve",
        "",
        f"Realised code share of every audited run against code and math metrics; the line joins the arms "
        f"of the proportional family ({', '.join(cs['family']) or 'none'}), means over seeds.",
        "",
        *_table(["arm", "code share %", "seeds", *cs["metrics"]], rows),
        "",
    ]
    return lines + _fig(report, "code_share", "code share vs code and math metrics")


def routing_section(report: dict) -> list[str]:
    ro = report["routing"]
    lines = ["## Routing", ""]
    if not ro["seeds"]:
        return [*lines, f"Not available: {ro['missing']}; routing claims are not tested.", ""]
    a, b = ro["pair"]
    lines += [
        "Cross-arm JSD (bits) per domain against the routing reference, mean over MoE layers at the "
        "arm's last analysed step; bold: the domain that shifted most.",
        "",
    ]
    for s in ro["seeds"]:
        doms = sorted({d for per in s["jsd"].values() for d in per})
        rows = []
        for arm, jsd in s["jsd"].items():
            top = max(jsd, key=jsd.get) if jsd else None
            cells = [
                ("**" + _num(jsd[d], ".4f") + "**") if d == top else _num(jsd.get(d), ".4f") for d in doms
            ]
            rows.append(
                [arm, s["source"][arm], s["step"][arm] if s["step"][arm] is not None else "—", *cells]
            )
        lines += [f"### seed {s['seed']} (`{s['path']}`, reference `{s['reference']}`)", ""]
        lines += [*_table(["arm", "source", "step", *doms], rows), ""] if rows else ["No cross-arm JSD.", ""]
        columns = registry.summary_metrics()
        prow = [
            [
                arm,
                p["step"] if p["step"] is not None else "train counts",
                _num(p.get("overlap")),
                _num(p.get("jsd"), ".4f"),
                *(_num(p.get("metrics", {}).get(c.name), f".{c.digits}f") for c in columns),
                ", ".join(f"{k}: {v:.3f}" for k, v in p.get("saturation", {}).items()) or "—",
            ]
            for arm, p in s["pair"].items()
        ]
        if prow:
            heads = ["run", "step", f"J({a}, {b})", f"JSD({a}, {b}) bits", *(c.label for c in columns)]
            lines += _table([*heads, "saturation by step"], prow)
            lines.append("")
        if s["warnings"]:
            lines += ["Warnings of this analysis:", "", *(f"- {w}" for w in s["warnings"]), ""]
        if s["plots"]:
            lines += ["Plots: " + ", ".join(f"[{os.path.basename(p)}]({p})" for p in s["plots"]), ""]
    return lines + _fig(report, "routing_jsd", "cross-arm JSD per domain")


def render(report: dict) -> str:
    conf = round(100 * report["confidence"])
    lines = [
        f"# Sweep report: `{report['sweep_name']}`",
        "",
        f"Made by `{report['command']}` from the files under the sweep directory; every number below "
        f"is computed from them. Reference arm: `{report['reference']}`. Confidence level: **{conf}%** for "
        f"every interval: claims use seed-level t intervals; the capability tables a percentile bootstrap "
        f"over seeds and items ({report['bootstrap_replicates']} resamples), exploratory.",
        "",
        "## What the data shows",
        "",
        " ".join(report["summary"]),
        "",
        *claims_section(report),
        *decision_section(report),
        *runs_section(report),
        *capability_section(report),
        *curves_section(report),
        *audit_section(report),
        *code_share_section(report),
        *routing_section(report),
    ]
    if report["warnings"]:
        lines += ["## Warnings", "", *(f"- {w}" for w in report["warnings"]), ""]
    return "\n".join(lines)
