"""Writing the report: routing.json (every metric keyed by run, step, layer, domain), summary.md, plots.

JSON has no NaN: undefined values (a domain without tokens, an overlap with an empty union) are null.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mixlab.analysis import plots, registry
from mixlab.analysis.options import Options, RunRouting


def clean(x: Any) -> Any:
    """numpy -> Python, NaN/inf -> None, recursively."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return clean(x.tolist())
    if isinstance(x, np.bool_ | bool):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    return x


def _pairs(m_DD: np.ndarray, names) -> dict:
    return {a: {b: m_DD[i, j] for j, b in enumerate(names)} for i, a in enumerate(names)}


def layers_json(m: dict, saturation: dict | None = None) -> dict:
    """{layer: {"all": {...}, "domains": {d: {...}}, "jsd": {a: {b}}, "overlap": {a: {b}}}}: every
    registered metric (`registry.py`) of `m` (`metrics.count_metrics` or `trace_metrics`), and the
    saturation series' value at this step when there is one."""
    names = m["domain_names"]
    values = registry.evaluate(m)
    out = {}
    for layer in range(m["activation_NDE"].shape[0]):
        overall = {k: v[layer] for k, (v, _) in values.items() if v is not None}
        if saturation:
            overall["saturation"] = saturation["overall_N"][layer]
        domains = {}
        for d, name in enumerate(names):
            row = {k: v[layer, d] for k, (_, v) in values.items() if v is not None}
            if saturation:
                row["saturation"] = saturation["domain_ND"][layer, d]
            domains[name] = row
        out[str(layer)] = {
            "all": overall,
            "domains": domains,
            "jsd": _pairs(m["jsd_NDD"][layer], names),
            "overlap": _pairs(m["overlap_NDD"][layer], names),
        }
    return out


def to_json(
    runs, reference: str, cross: dict, cross_train: dict, comp: dict, warnings: list[str], opts
) -> dict:
    out_runs = {}
    for run in runs:
        steps = {}
        for step, m in sorted(run.metrics.items()):
            meta = run.collected.get(step, {})
            steps[str(step)] = {
                "tokens": run.traces[step].tokens_per_domain(),
                "loss": meta.get("loss", {}),
                "redundancy": meta.get("redundancy", {}),
                "layers": layers_json(m, run.saturation.get(step)),
            }
        train = None
        if run.train is not None:
            train = {"since_step": run.train["since_step"], "layers": layers_json(run.train)}
        out_runs[run.name] = {"workdir": run.workdir, **run.info, "train_counts": train, "steps": steps}
    return clean(
        {
            "meta": {
                "reference": reference,
                "jsd_units": "bits (log base 2; 0 = identical, 1 = disjoint)",
                "entropy_units": "nats",
                "delta": opts.delta,
                "tokens_per_domain": opts.tokens_per_domain,
                "seed": opts.seed,
                "mask_top": list(opts.mask_top),
                "layers": "MoE layers in order; `moe_layers` of each run gives their block indices",
            },
            "warnings": warnings,
            "runs": out_runs,
            "cross_arm_jsd": cross,
            "cross_arm_jsd_train_counts": cross_train,
            "competition": comp,
        }
    )


def _fmt(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _layer_table(m: dict, pair: tuple[str, str]) -> list[str]:
    names = m["domain_names"]
    a, b = (names.index(p) if p in names else None for p in pair)
    columns = registry.summary_metrics()
    overall = {c.name: c.fn(m)[0] for c in columns}
    lines = [
        f"| layer | JSD({pair[0]}, {pair[1]}) bits | J({pair[0]}, {pair[1]}) | "
        + " | ".join(c.label for c in columns)
        + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for layer in range(m["activation_NDE"].shape[0]):
        ok = a is not None and b is not None
        jsd = float(m["jsd_NDD"][layer, a, b]) if ok else None
        ovl = float(m["overlap_NDD"][layer, a, b]) if ok else None
        cells = [_fmt(float(overall[c.name][layer]), c.digits) for c in columns]
        lines.append(f"| {layer} | {_fmt(jsd)} | {_fmt(ovl, 2)} | " + " | ".join(cells) + " |")
    return lines


def summary_markdown(
    runs: Sequence[RunRouting], reference: str, cross: dict, warnings: list[str], opts: Options
) -> str:
    """Headline numbers per run: one table per run (its last analysed step, or training counts)."""
    lines = [
        "# Routing summary",
        "",
        f"Reference arm: `{reference}`. JSD in bits; J with delta = {opts.delta}.",
        "",
    ]
    for run in runs:
        if run.metrics:
            step = max(run.metrics)
            lines += [f"## {run.name} (step {step}, trace)", ""] + _layer_table(run.metrics[step], opts.pair)
            red = run.collected[step].get("redundancy", {})
            for d in opts.pair:
                if d in red:
                    dl = ", ".join(f"ΔL({r}) = {v:+.3f}" for r, v in red[d]["delta_loss"].items())
                    lines.append(f"\n{d}: loss {red[d]['loss_r0']:.3f} nats/token (dropless), {dl}")
            for s, c in cross.get(run.name, {}).items():
                vals = [v for layer in c["layers"].values() for v in layer.values()]
                if vals and s == max(cross[run.name]):
                    lines.append(f"\nmean JSD vs {reference} at step {s}: {np.mean(vals):.4f} bits")
            lines.append("")
        if run.train is not None:
            lines += [f"## {run.name} (training counts since step {run.train['since_step']})", ""]
            lines += [*_layer_table(run.train, opts.pair), ""]
    if warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    return "\n".join(lines)


def plot_all(runs: Sequence[RunRouting], cross: dict, out: str) -> list[str]:
    """Heatmaps, JSD and co-activation matrices of each run's last step; cross-arm bars; saturation."""
    folder, paths = os.path.join(out, "plots"), []
    for run in runs:
        sources = {f"step{s}": m for s, m in run.metrics.items() if s == max(run.metrics)}
        if run.train is not None:
            sources["train_counts"] = run.train
        for label, m in sources.items():
            names, title = list(m["domain_names"]), f"{run.name} {label}"
            base = os.path.join(folder, f"{run.name}_{label}")
            paths.append(
                plots.activation_heatmaps(
                    m["specialisation_NDE"], float(m["spec_baseline"]), names, title, base + "_activation.png"
                )
            )
            paths.append(
                plots.matrices(m["jsd_NDD"], names, f"{title}: domain JSD (bits)", base + "_jsd.png")
            )
            if "coactivation_NEE" in m:
                paths.append(
                    plots.matrices(
                        m["coactivation_NEE"], None, f"{title}: co-activation", base + "_coactivation.png"
                    )
                )
    for s in sorted({s for c in cross.values() for s in c}):
        at_s = {arm: c[s]["layers"] for arm, c in cross.items() if s in c}
        if any(at_s.values()):
            paths.append(
                plots.cross_arm_bars(
                    at_s, f"JSD vs reference at step {s}", os.path.join(folder, f"cross_arm_jsd_step{s}.png")
                )
            )
    series = {r.name: {s: v["overall_N"] for s, v in r.saturation.items()} for r in runs if r.saturation}
    if series:
        paths.append(plots.saturation_curves(series, os.path.join(folder, "saturation.png")))
    return paths
