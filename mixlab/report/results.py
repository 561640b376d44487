"""results.csv: one row per (arm, seed, step, kind, metric), every number read or computed from the files.

kind                 metric                        value                                   items
train_loss           train/loss                    the last logged train loss (at its step)
domain_loss          <domain>                      held-out nats/token (the file's aggregate) sequences*
domain_bpb           <domain>                      held-out bits per byte (aggregate)         sequences*
domain_bpb_seq_mean  <domain>                      mean per-sequence bpb (capability table)   sequences
task                 <suite>/<family>              mean item score (pass@1, exact match)      items
task_suite           <suite>                       mean over every item of the suite          items
audit                requested_share/<d>,          token share (step: the run's steps)        sequences
                     realised_share/<d>                                                       drawn
routing              jsd_vs_<ref>/<d>,             layer means                                layers
                     overlap/code:math, jsd_within/code:math, saturation, and every summary metric
                     of analysis/registry.py under its name (entropy, effective_experts, dead_frac)
* 1 when the eval file has no per-sequence lists
"""

from __future__ import annotations

import csv
import math

import numpy as np

from mixlab.report import scores
from mixlab.report.load import Sweep

COLUMNS = ("arm", "seed", "step", "kind", "metric", "value", "items")


def _adder(out: list[dict]):
    def add(arm, seed, step, kind, metric, value, items=None):
        if value is not None and math.isfinite(value):
            out.append(dict(zip(COLUMNS, (arm, seed, step, kind, metric, float(value), items), strict=True)))

    return add


def rows(sweep: Sweep, seq_domains: set[str], routing: dict) -> list[dict]:
    out: list[dict] = []
    add = _adder(out)

    for r in (r for a in sweep.arms for r in sweep.of(a)):
        a, s, step = r.arm, r.seed, r.final_step
        add(a, s, r.train_step, "train_loss", "train/loss", r.train_loss)
        for d, v in sorted(r.final.items()):
            per_seq = scores.seq_bpb(v)
            n = len(per_seq) if per_seq else 1
            add(a, s, step, "domain_loss", d, v["loss"], n)
            add(a, s, step, "domain_bpb", d, v["bpb"], n)
            if d in seq_domains and per_seq:
                add(a, s, step, "domain_bpb_seq_mean", d, np.mean(list(per_seq.values())), n)
        for m, items in sorted(scores.task_scores(r).items()):
            add(a, s, step, "task", m, np.mean(list(items.values())), len(items))
        for suite in sorted({it.get("suite") for it in (r.tasks or {}).get("items", []) if it.get("suite")}):
            items = scores.suite_items(r, suite)
            add(a, s, step, "task_suite", suite, np.mean(list(items.values())), len(items))
        for d, v in sorted(((r.audit or {}).get("domains") or {}).items()):
            run_steps = r.audit.get("run_steps", step)
            add(a, s, run_steps, "audit", f"requested_share/{d}", v.get("requested_share"))
            add(
                a,
                s,
                run_steps,
                "audit",
                f"realised_share/{d}",
                v.get("realised_share"),
                r.audit.get("sequences"),
            )
    return out + routing_rows(routing)


def routing_rows(routing: dict) -> list[dict]:
    """The `routing` kind's rows from `routing_summary.load`."""
    out: list[dict] = []
    add = _adder(out)
    for rs in routing.get("seeds", []):
        s, ref = rs["seed"], rs["reference"]
        for arm, jsd in rs["jsd"].items():
            layers = len(rs["jsd_layers"][arm])
            for d, v in jsd.items():
                add(arm, s, rs["step"][arm], "routing", f"jsd_vs_{ref}/{d}", v, layers)
        pair = ":".join(routing.get("pair", ()))
        for arm, p in rs["pair"].items():
            add(arm, s, p["step"], "routing", f"overlap/{pair}", p.get("overlap"))
            add(arm, s, p["step"], "routing", f"jsd_within/{pair}", p.get("jsd"))
            for name, v in p.get("metrics", {}).items():
                add(arm, s, p["step"], "routing", name, v)
            for step, v in p.get("saturation", {}).items():
                add(arm, s, step, "routing", "saturation", v)
    return out


def write(path: str, table: list[dict]) -> str:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for row in table:
            w.writerow({k: "" if v is None else v for k, v in row.items()})
    return path
