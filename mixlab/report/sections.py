"""The report's data sections, each computed from the sweep's files: runs, capability tables, loss
curves, the realised-mixture audit and the code-share curve. Everything here lands in report.json."""

from __future__ import annotations

import re

import numpy as np

from mixlab.configlib import ConfigError
from mixlab.evals import capability
from mixlab.report import scores
from mixlab.report.load import Sweep

CODE = "code"  # the domain whose share the code-share curve puts on its x-axis
# Arms on the code-share curve besides `code_<P>`: proportional renormalisations of the base mixture.
CODE_SHARE_ARMS = ("full", "no_code")
CODE_SHARE_METRICS = (
    "bpb/code",
    "bpb/math",
    "tasks:math_free",
    "tasks:math",
    "tasks:math_extrap",
    "tasks:output_pred",
    "tasks:code_gen",
)


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def runs(sweep: Sweep) -> dict:
    """Per arm: seeds, final steps, tokens and the final train loss (mean over seeds, and per seed)."""
    arms = []
    for arm in sweep.arms:
        rs = sweep.of(arm)
        arms.append(
            {
                "arm": arm,
                "seeds": [r.seed for r in rs],
                "steps": sorted({r.final_step for r in rs}),
                "tokens": sorted({r.tokens for r in rs if r.tokens is not None}),
                "final_train_loss": _mean(r.train_loss for r in rs),
                "final_train_loss_by_seed": {str(r.seed): r.train_loss for r in rs},
                "eval_steps": sorted({s for r in rs for s in r.evals}),
                "task_evals": sum(r.tasks is not None for r in rs),
                "mixture": rs[0].config.get("data", {}).get("arm") or "(base)",
            }
        )
    return {"arms": arms, "skipped": list(sweep.skipped)}


def _table(results: dict, reference: str, confidence: float, replicates: int, what: str) -> dict:
    try:
        table, _ = capability.capability_table(
            results, reference, confidence=confidence, replicates=replicates
        )
    except ValueError as e:
        raise ConfigError(f"{what}: {e}") from None
    return table


def capability_section(sweep: Sweep, seq_domains: set[str], confidence: float, replicates: int) -> dict:
    """Two capability tables against the reference: held-out bpb (every arm) and generation tasks
    (arms whose every seed has a task eval; none when the reference lacks one)."""
    ref = sweep.reference
    bpb = {a: {str(r.seed): scores.bpb_scores(r, seq_domains) for r in sweep.of(a)} for a in sweep.arms}
    out = {
        "bpb": _table(bpb, ref, confidence, replicates, "held-out bpb"),
        "bpb_items": {
            d: ("sequences" if d in seq_domains else "one per domain (no seq_* lists)")
            for d in sorted({d for r in sweep.runs for d in r.final})
        },
        "tasks": None,
        "notes": [],
    }
    with_tasks = [a for a in sweep.arms if all(r.tasks is not None for r in sweep.of(a))]
    if without := [a for a in sweep.arms if a not in with_tasks]:
        out["notes"].append(f"no task eval (in every seed) for: {', '.join(without)}")
    with_answers = [a for a in sweep.arms if all(r.final_answers for r in sweep.of(a))]
    out["answers"] = None
    if ref in with_answers:
        ans = {a: {str(r.seed): scores.answer_scores(r) for r in sweep.of(a)} for a in with_answers}
        out["answers"] = _table(ans, ref, confidence, replicates, "answer-level likelihoods")
    if ref in with_tasks:
        tasks = {a: {str(r.seed): scores.task_scores(r) for r in sweep.of(a)} for a in with_tasks}
        if all(m for per in tasks.values() for m in per.values()):
            out["tasks"] = _table(tasks, ref, confidence, replicates, "generation tasks")
    return out


def loss_curves(sweep: Sweep) -> dict:
    """{domain: {arm: {"steps", "loss", "seeds"}}}: held-out loss at each eval step, mean over the seeds
    that have that step."""
    out: dict = {}
    for arm in sweep.arms:
        rs = sweep.of(arm)
        for domain in sorted({d for r in rs for d in r.final}):
            steps = sorted({s for r in rs for s in r.evals if domain in r.evals[s]})
            vals = [[r.evals[s][domain]["loss"] for r in rs if domain in r.evals.get(s, {})] for s in steps]
            out.setdefault(domain, {})[arm] = {
                "steps": steps,
                "loss": [float(np.mean(v)) for v in vals],
                "seeds": [len(v) for v in vals],
            }
    return out


def audit(sweep: Sweep) -> dict:
    """Per arm, mean over its audited seeds: requested and realised share, run tokens, epochs."""
    arms, missing = {}, []
    for arm in sweep.arms:
        audits = [r.audit for r in sweep.of(arm) if r.audit and isinstance(r.audit.get("domains"), dict)]
        missing += [
            r.name for r in sweep.of(arm) if not (r.audit and isinstance(r.audit.get("domains"), dict))
        ]
        if not audits:
            continue
        domains = {}
        for d in sorted({d for a in audits for d in a["domains"]}):
            rows = [a["domains"].get(d, {}) for a in audits]
            domains[d] = {
                k: _mean(row.get(k) for row in rows)
                for k in (
                    "requested_share",
                    "realised_share",
                    "tokens_run_requested",
                    "tokens_run_delta",
                    "epochs",
                )
            }
        windows = [a.get("max_window_error_pp") for a in audits]
        arms[arm] = {
            "seeds": len(audits),
            "arm_string": audits[0].get("arm"),
            "sequences": audits[0].get("sequences"),
            "run_tokens": _mean(a.get("run_tokens") for a in audits),
            "max_window_error_pp": max((w for w in windows if w is not None), default=None),
            "domains": domains,
        }
    active = sorted(
        {
            d
            for a in arms.values()
            for d, v in a["domains"].items()
            if (v["requested_share"] or 0) > 0 or (v["realised_share"] or 0) > 0
        }
    )
    return {"arms": arms, "domains": active, "without_audit": missing}


def in_code_share_family(arm: str) -> bool:
    return arm in CODE_SHARE_ARMS or re.fullmatch(r"code_\d+(?:\.\d+)?", arm) is not None


def code_share(sweep: Sweep) -> dict:
    """Every audited run's realised code share and its code/math metrics (file aggregates: bpb of the
    eval file, mean task score over a suite's items); the family is the proportional code-share arms."""
    points = []
    for r in (r for a in sweep.arms for r in sweep.of(a)):
        if not (r.audit and CODE in (r.audit.get("domains") or {})):
            continue
        metrics = {}
        for m in CODE_SHARE_METRICS:
            if m.startswith("bpb/"):
                v = r.final.get(m.removeprefix("bpb/"), {}).get("bpb")
            else:
                items = scores.suite_items(r, m.removeprefix("tasks:"))
                v = float(np.mean(list(items.values()))) if items else None
            if v is not None:
                metrics[m] = float(v)
        dom = r.audit["domains"][CODE]
        points.append(
            {
                "arm": r.arm,
                "seed": r.seed,
                "code_share": dom.get("realised_share"),
                "requested_code_share": dom.get("requested_share"),
                "metrics": metrics,
            }
        )
    present = [m for m in CODE_SHARE_METRICS if any(m in p["metrics"] for p in points)]
    family = [a for a in sweep.arms if in_code_share_family(a)]
    by_arm = {}
    for a in sweep.arms:
        pts = [p for p in points if p["arm"] == a]
        if pts:
            by_arm[a] = {
                "code_share": _mean(p["code_share"] for p in pts),
                "seeds": len(pts),
                **{m: _mean(p["metrics"].get(m) for p in pts) for m in present},
            }
    return {"points": points, "metrics": present, "family": family, "by_arm": by_arm}


def code_share_sentence(section: dict) -> str | None:
    """A templated sentence on the family's trend: each metric at the lowest and highest code share."""
    fam = sorted(
        (
            (v["code_share"], a)
            for a, v in section["by_arm"].items()
            if a in section["family"] and v["code_share"] is not None
        )
    )
    if len(fam) < 2:
        return None
    (lo_share, lo), (hi_share, hi) = fam[0], fam[-1]
    parts = []
    for m in section["metrics"]:
        a, b = section["by_arm"][lo].get(m), section["by_arm"][hi].get(m)
        if a is not None and b is not None:
            parts.append(f"{m} {a:.3f} → {b:.3f}")
    if not parts:
        return None
    return (
        f"Across the code-share runs ({len(fam)} arms), going from {100 * lo_share:.1f}% realised code "
        f"({lo}) to {100 * hi_share:.1f}% ({hi}): " + ", ".join(parts) + " (means over seeds)."
    )
