"""PNG figures of the routing report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display needed
import numpy as np


def grid(n: int, size: float | tuple[float, float] = 3.2):
    """(figure, n axes) on up to 4 columns, each panel `size` inches (square) or (width, height);
    panels past n are hidden."""
    w, h = (size, size) if isinstance(size, int | float) else size
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def activation_heatmaps(spec_NDE: np.ndarray, baseline: float, names, title: str, path: str) -> str:
    """Layer x expert heatmap of S_l(d, e) / (K / E) per domain (1 = the uniform router)."""
    fig, axes = grid(len(names))
    ratio = spec_NDE / baseline
    vmax = max(2.0, float(np.nanmax(ratio))) if np.isfinite(ratio).any() else 2.0
    for ax, d, name in zip(axes, range(len(names)), names, strict=False):
        im = ax.imshow(ratio[:, d], aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
        ax.set(title=name, xlabel="expert", ylabel="MoE layer", yticks=range(ratio.shape[0]))
    fig.colorbar(im, ax=axes[: len(names)], shrink=0.8, label="S / (K/E)")
    fig.suptitle(title)
    return save(fig, path)


def matrices(mats_NXX: np.ndarray, labels, title: str, path: str) -> str:
    """One square matrix per MoE layer (within-run domain JSD, expert co-activation); labelled
    matrices (domains) also print their values."""
    fig, axes = grid(len(mats_NXX), size=3.6)
    for layer, (ax, m) in enumerate(zip(axes, mats_NXX, strict=False)):
        im = ax.imshow(m, cmap="magma", vmin=0)
        ax.set_title(f"layer {layer}")
        if labels is not None:
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            for (i, j), v in np.ndenumerate(m):  # few domains: print the values
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5, color="w")
        else:  # experts: C(i -> j) has i on the rows
            ax.set(xlabel="expert j", ylabel="expert i")
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle(title)
    return save(fig, path)


def cross_arm_bars(cross: dict[str, dict[int, dict[str, float]]], title: str, path: str) -> str:
    """JSD(arm, reference) per domain, one bar per MoE layer, one panel per arm."""
    arms = [a for a in cross if cross[a]]
    fig, axes = grid(max(len(arms), 1), size=4.2)
    for ax, arm in zip(axes, arms, strict=False):
        layers = sorted(cross[arm])
        domains = list(cross[arm][layers[0]])
        width = 0.8 / len(layers)
        for i, layer in enumerate(layers):
            ax.bar(
                np.arange(len(domains)) + i * width,
                [cross[arm][layer][d] for d in domains],
                width,
                label=f"layer {layer}",
            )
        ax.set_xticks(np.arange(len(domains)) + 0.4 - width / 2, domains, rotation=45, fontsize=8)
        ax.set(title=arm, ylabel="JSD vs reference (bits)")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return save(fig, path)


def saturation_curves(series: dict[str, dict[int, np.ndarray]], path: str) -> str:
    """Sat_l(t) against the run's final checkpoint, one line per (run, MoE layer)."""
    fig, axes = grid(max(len(series), 1), size=4.2)
    for ax, (run, by_step) in zip(axes, series.items(), strict=False):
        steps = sorted(by_step)
        sat_SN = np.stack([by_step[s] for s in steps])
        for layer in range(sat_SN.shape[1]):
            ax.plot(steps, sat_SN[:, layer], marker="o", label=f"layer {layer}")
        ax.set(title=run, xlabel="step", ylabel="saturation vs final", ylim=(0, 1.05))
        ax.legend(fontsize=7)
    return save(fig, path)
