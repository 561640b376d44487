"""The report's PNG figures (matplotlib, Agg backend). Each takes the report's own data (what report.json
holds) and returns the path written, or None when there is nothing to draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display needed
import numpy as np

from mixlab.analysis.plots import grid, save

MAX_PANELS = 24
PANEL = (3.6, 2.8)  # inches per panel


def capability(tables: list[dict], path: str) -> str | None:
    """Gain % (+ = better) vs the reference with CI error bars: a panel per dimension/metric, bars per arm."""
    rows = [(t, r) for t in tables for r in t["rows"] if len(t["arms"]) > 1]
    rows = [x for x in rows if x[1]["kind"] == "dimension"] + [x for x in rows if x[1]["kind"] == "metric"]
    rows = rows[:MAX_PANELS]
    if not rows:
        return None
    fig, axes = grid(len(rows), size=PANEL)
    for ax, (table, row) in zip(axes, rows, strict=False):
        arms = table["arms"][1:]
        gains = [row["arms"][a]["gain_pct"] for a in arms]
        cis = [row["arms"][a]["gain_pct_ci"] or [np.nan, np.nan] for a in arms]
        g = np.array([np.nan if x is None else x for x in gains], dtype=float)
        lo = np.array([c[0] if c[0] is not None else np.nan for c in cis], dtype=float)
        hi = np.array([c[1] if c[1] is not None else np.nan for c in cis], dtype=float)
        err = np.nan_to_num(np.stack([g - lo, hi - g]), nan=0.0).clip(min=0)
        colors = ["tab:green" if x > 0 else "tab:red" for x in np.nan_to_num(g)]
        ax.bar(range(len(arms)), np.nan_to_num(g), yerr=err, color=colors, capsize=3)
        ax.axhline(0, color="black", lw=0.8)
        name = row["name"] + ("" if row["higher_is_better"] else " ↓")
        ax.set_title(("[dim] " if row["kind"] == "dimension" else "") + name, fontsize=9)
        ax.set_xticks(range(len(arms)), arms, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(f"gain % vs {table['reference']}", fontsize=8)
    return save(fig, path)


def loss_curves(curves: dict, path: str) -> str | None:
    """Held-out loss over steps: a panel per domain, a line per arm (mean over seeds)."""
    if not curves:
        return None
    fig, axes = grid(len(curves), size=PANEL)
    for ax, (domain, by_arm) in zip(axes, curves.items(), strict=False):
        for arm, c in by_arm.items():
            ax.plot(c["steps"], c["loss"], marker="o", ms=3, label=arm)
        ax.set(title=domain, xlabel="step", ylabel="loss (nats/token)")
    axes[0].legend(fontsize=7)
    return save(fig, path)


def audit(shares: dict, path: str) -> str | None:
    """Requested and realised token share per domain, a pair of stacked bars per arm."""
    if not shares:
        return None
    arms = list(shares)
    domains = sorted({d for per in shares.values() for d in per})
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(arms) + 1.5), layout="constrained")
    cmap = plt.get_cmap("tab10")
    labels, y = [], 0
    for arm in arms:
        for kind in ("requested", "realised"):
            left = 0.0
            for i, d in enumerate(domains):
                v = shares[arm].get(d, {}).get(kind) or 0.0
                ax.barh(
                    y,
                    v,
                    left=left,
                    color=cmap(i % 10),
                    hatch="//" if kind == "requested" else None,
                    label=d if y == 0 else None,
                    edgecolor="white",
                )
                left += v
            labels.append(f"{arm} {kind[:4]}.")
            y += 1
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="token share", xlim=(0, 1), title="requested (hatched) vs realised mixture")
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, path)


def code_share(points: list[dict], family: list[str], metrics: list[str], path: str) -> str | None:
    """Each run's realised code share vs each metric; a line through the code-share family's arm means."""
    if not points or not metrics:
        return None
    fig, axes = grid(len(metrics), size=PANEL)
    for ax, m in zip(axes, metrics, strict=False):
        pts = [p for p in points if p["metrics"].get(m) is not None]
        for arm in dict.fromkeys(p["arm"] for p in pts):
            xs = [p["code_share"] for p in pts if p["arm"] == arm]
            ys = [p["metrics"][m] for p in pts if p["arm"] == arm]
            ax.scatter(xs, ys, s=18, marker="o" if arm in family else "x", label=arm)
        line = sorted(
            (
                np.mean([p["code_share"] for p in pts if p["arm"] == a]),
                np.mean([p["metrics"][m] for p in pts if p["arm"] == a]),
            )
            for a in family
            if any(p["arm"] == a for p in pts)
        )
        if len(line) > 1:
            ax.plot(*zip(*line, strict=True), color="gray", lw=1)
        ax.set(title=m, xlabel="realised code share", ylabel=m)
    axes[0].legend(fontsize=6)
    return save(fig, path)


def routing_jsd(seeds: list[dict], path: str) -> str | None:
    """Cross-arm JSD vs the reference per domain (mean over layers): a panel per seed, bars per arm."""
    seeds = [s for s in seeds if s["jsd"]]
    if not seeds:
        return None
    fig, axes = grid(len(seeds), size=(5.5, 3.2))
    for ax, s in zip(axes, seeds, strict=False):
        arms = list(s["jsd"])
        domains = sorted({d for per in s["jsd"].values() for d in per})
        width = 0.8 / len(arms)
        for i, arm in enumerate(arms):
            vals = [s["jsd"][arm].get(d, np.nan) for d in domains]
            ax.bar(np.arange(len(domains)) + i * width, vals, width, label=arm)
        ax.set_xticks(np.arange(len(domains)) + 0.4 - width / 2, domains, rotation=30, fontsize=7)
        ax.set(title=f"seed {s['seed']}: JSD vs {s['reference']}", ylabel="JSD (bits)")
        ax.legend(fontsize=7)
    return save(fig, path)
