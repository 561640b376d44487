"""The routing section: `DIR/routing/seed_<s>/routing.json` (experiments.routing) reduced to tables.

Runs in routing.json are named by their workdir's basename; a workdir `DIR/<arm>/seed_<s>` (basename
`seed_<s>`) is mapped to `<arm>`, any other name is taken as the arm itself. Cross-arm JSD (bits) per
domain is the mean over MoE layers at the arm's last analysed step; when the analysis has no traces
(`--notraces`), the training-count JSD is used and the source says so. Code/math expert-set overlap
and within-run JSD are layer means at each run's last step, as is every summary metric of the
registry (`analysis/registry.py`: entropy, effective experts, dead experts, and any added there);
router saturation is the layer mean at every step of the series (only with `--all_steps`).
"""

from __future__ import annotations

import os
import re

import numpy as np

from mixlab.analysis import registry
from mixlab.report.load import ROUTING_DIR, read_json

PAIR = ("code", "math")


def arm_of(name: str, run: dict) -> str:
    workdir = os.path.normpath(run.get("workdir") or name)
    if re.fullmatch(r"seed_\d+", os.path.basename(workdir)):
        return os.path.basename(os.path.dirname(workdir))
    return name


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _layer_means(layers: dict) -> dict[str, float]:
    """{layer: {domain: v}} -> {domain: mean over layers}."""
    domains = sorted({d for per in layers.values() for d in per})
    out = {d: _mean(per.get(d) for per in layers.values()) for d in domains}
    return {d: v for d, v in out.items() if v is not None}


def _layer_metrics(layers: dict) -> dict[str, float | None]:
    """Layer means of every summary metric of the registry (`analysis/registry.py`)."""
    return {
        m.name: _mean((lay.get("all") or {}).get(m.name) for lay in layers.values())
        for m in registry.summary_metrics()
    }


def _pair(layers: dict, key: str) -> float | None:
    a, b = PAIR
    return _mean(((lay.get(key) or {}).get(a) or {}).get(b) for lay in layers.values())


def seed_summary(path: str, seed: int, root: str) -> dict:
    report = read_json(path)
    runs = report.get("runs") or {}
    names = {n: arm_of(n, r) for n, r in runs.items()}
    ref_name = (report.get("meta") or {}).get("reference")
    out = {
        "seed": seed,
        "path": os.path.relpath(path, root),
        "reference": names.get(ref_name, ref_name),
        "jsd": {},
        "jsd_layers": {},
        "step": {},
        "source": {},
        "pair": {},
        "competition": {},
        "warnings": list(report.get("warnings") or []),
    }
    ref_steps = (runs.get(ref_name) or {}).get("steps") or {}
    ref_layers = ref_steps[max(ref_steps, key=int)]["layers"] if ref_steps else {}
    for name, by_step in (report.get("competition") or {}).items():
        if comp := competition_summary(by_step, ref_layers):
            out["competition"][names.get(name, name)] = comp
    for name, by_step in (report.get("cross_arm_jsd") or {}).items():
        if by_step:
            step = max(by_step, key=int)
            arm = names.get(name, name)
            out["jsd_layers"][arm] = by_step[step]["layers"]
            out["jsd"][arm], out["step"][arm], out["source"][arm] = (
                _layer_means(by_step[step]["layers"]),
                int(step),
                "traces",
            )
    for name, layers in (report.get("cross_arm_jsd_train_counts") or {}).items():
        arm = names.get(name, name)
        if arm not in out["jsd"] and layers:
            out["jsd_layers"][arm] = layers
            out["jsd"][arm], out["step"][arm], out["source"][arm] = (
                _layer_means(layers),
                None,
                "training counts",
            )
    for name, run in runs.items():
        steps = run.get("steps") or {}
        row: dict = {}
        if steps:
            last = steps[max(steps, key=int)]["layers"]
            row = {
                "step": int(max(steps, key=int)),
                "overlap": _pair(last, "overlap"),
                "jsd": _pair(last, "jsd"),
                "metrics": _layer_metrics(last),
            }
        elif run.get("train_counts"):
            layers = run["train_counts"]["layers"]
            row = {
                "step": None,
                "overlap": _pair(layers, "overlap"),
                "jsd": _pair(layers, "jsd"),
                "metrics": _layer_metrics(layers),
            }
        sat = {
            int(s): _mean((lay.get("all") or {}).get("saturation") for lay in v["layers"].values())
            for s, v in steps.items()
        }
        if sat := {s: v for s, v in sorted(sat.items()) if v is not None}:
            row["saturation"] = sat
        if row:
            out["pair"][names[name]] = row
    plots = os.path.join(os.path.dirname(path), "plots")
    out["plots"] = sorted(
        os.path.relpath(os.path.join(plots, f), root)
        for f in (os.listdir(plots) if os.path.isdir(plots) else ())
    )
    return out


def competition_summary(by_step: dict, ref_layers: dict) -> dict | None:
    """The competition/synergy index at the arm's last analysed step: per domain a, g(a <- b), ΔL_a and
    the layer mean of CSI_l(a, b), plus the reference's expert-set overlap J(a, b) (layer mean)."""
    steps = [s for s, v in by_step.items() if v]
    if not steps:
        return None
    last = by_step[max(steps, key=int)]
    b = last["intervention"]
    effects = {}
    for a, e in last["effects"].items():
        csi = [x for x in last["index_layer_domain"].get(a, []) if x is not None and x == x]
        effects[a] = {**e, "csi": float(np.mean(csi)) if csi else None}
    overlap = {
        a: _mean(((lay.get("overlap") or {}).get(a) or {}).get(b) for lay in ref_layers.values())
        for a in effects
    }
    return {
        "step": int(max(steps, key=int)),
        "intervention": b,
        "delta_share": last["delta_share"],
        "effects": effects,
        "overlap": overlap,
    }


def load(root: str) -> dict:
    """{"seeds": [per-seed summaries], "missing": why there are none, "warnings": [...]}."""
    folder = os.path.join(root, ROUTING_DIR)
    seeds, warnings = [], []
    for sub in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        if m := re.fullmatch(r"seed_(\d+)", sub):
            path = os.path.join(folder, sub, "routing.json")
            if os.path.exists(path):
                seeds.append(seed_summary(path, int(m[1]), root))
            else:
                warnings.append(f"{os.path.join(folder, sub)}: no routing.json; seed left out of routing")
    seeds.sort(key=lambda s: s["seed"])
    missing = None if seeds else f"no routing analysis under {folder}"
    return {"seeds": seeds, "missing": missing, "warnings": warnings, "pair": list(PAIR)}
