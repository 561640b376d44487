"""The capability table: per dimension and metric, each arm's score and its relative change against a
reference arm, with bootstrap confidence intervals over seeds and items.

Input: `{arm: {seed: {metric: scores}}}`, where scores are one number per item, either a mapping
`{item_id: score}` (aligned by id) or a sequence (aligned by position); every arm and seed must score
the same items of a metric. `run_metrics(workdir)` reads them from a run's eval files.

- Score of a metric: mean over seeds and items. Score of a dimension (`dimensions.DIMENSION_MAP`): mean
  of its metrics' scores. A dimension must not mix lower- and higher-is-better metrics.
- Relative change, as in the study: Δ% = 100·(s_arm − s_ref)/s_ref, on the raw metric; undefined
  (None) when s_ref = 0, where the absolute change Δ still is. `gain_pct` is Δ% signed so that + is
  better: Δ% itself for accuracies, −Δ% for bits per byte and loss (a bpb from 2.0 to 1.8 is Δ −10%,
  gain +10%). The Markdown shows gains; rows where lower is better are marked ↓.
- Uncertainty: percentile bootstrap (default 2000 resamples, fixed rng seed). Each resample draws the
  seeds with replacement and the items with replacement; the item draw is shared by all drawn seeds
  and all arms (the same items are scored everywhere: a crossed design, so each seed does not get an
  independent item draw, which would shrink the item variance by the number of seeds and undercover),
  and an arm with the same seed names as the reference shares its seed draw (paired seeds).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np

from mixlab.evals import dimensions as dims

Scores = Mapping[str, float] | Sequence[float]


def _draws(rng: np.random.Generator, n: int, replicates: int) -> np.ndarray:
    """[replicates, n] counts of each of n units in a resample of size n (n draws with replacement)."""
    picks = rng.integers(0, n, size=(replicates, n)) + n * np.arange(replicates)[:, None]
    return np.bincount(picks.ravel(), minlength=replicates * n).reshape(replicates, n).astype(np.float64)


def _replicates(x_SN: np.ndarray, seed_w: np.ndarray, item_w: np.ndarray) -> np.ndarray:
    """Mean of each resample: sum over drawn seeds and drawn items of x, over S*N."""
    s, n = x_SN.shape
    return ((seed_w @ x_SN) * item_w).sum(axis=1) / (s * n)


def bootstrap_ci(
    x_SN: np.ndarray, *, confidence: float = 0.95, replicates: int = 2000, rng_seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) of a seeds x items score matrix, by the crossed percentile bootstrap."""
    x_SN = np.asarray(x_SN, dtype=np.float64)
    rng = np.random.default_rng(rng_seed)
    boot = _replicates(x_SN, _draws(rng, x_SN.shape[0], replicates), _draws(rng, x_SN.shape[1], replicates))
    lo, hi = _interval(boot, confidence)
    return float(x_SN.mean()), lo, hi


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def _matrix(per_seed: list[Scores], where: str) -> tuple[list, np.ndarray]:
    """Item ids (or positions) and the seeds x items matrix; all seeds must score the same items."""
    first = per_seed[0]
    ids = sorted(first) if isinstance(first, Mapping) else list(range(len(first)))
    rows = []
    for scores in per_seed:
        if isinstance(scores, Mapping):
            if sorted(scores) != ids:
                raise ValueError(f"{where}: the seeds score different items")
            rows.append([scores[i] for i in ids])
        else:
            if len(scores) != len(ids):
                raise ValueError(f"{where}: the seeds score {len(ids)} and {len(scores)} items")
            rows.append(list(scores))
    if not ids:
        raise ValueError(f"{where}: no items")
    return ids, np.asarray(rows, dtype=np.float64)


def _stats(arm_point, arm_boot, arm_seeds, ref_point, ref_boot, is_ref, higher, confidence) -> dict:
    out = {"score": arm_point, "score_ci": list(_interval(arm_boot, confidence)), "seed_scores": arm_seeds}
    if is_ref:
        return out
    diff = arm_boot - ref_boot
    out["delta_abs"], out["delta_abs_ci"] = arm_point - ref_point, list(_interval(diff, confidence))
    if ref_point == 0:
        out.update(delta_pct=None, delta_pct_ci=None, gain_pct=None, gain_pct_ci=None)
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(ref_boot != 0, 100 * diff / ref_boot, np.nan)
    sign = 1.0 if higher else -1.0
    lo, hi = _interval(pct, confidence)
    out["delta_pct"] = 100 * (arm_point - ref_point) / ref_point
    out["delta_pct_ci"] = [lo, hi]
    out["gain_pct"] = sign * out["delta_pct"]
    out["gain_pct_ci"] = sorted([sign * lo, sign * hi])
    return out


def capability_table(
    results_by_arm_seed: Mapping[str, Mapping[object, Mapping[str, Scores]]],
    reference: str,
    *,
    confidence: float = 0.95,
    replicates: int = 2000,
    rng_seed: int = 0,
    dimensions: Mapping[str, str] | None = None,
) -> tuple[dict, str]:
    """(JSON-ready dict, Markdown) of every dimension and metric for every arm against `reference`.

    Args:
      results_by_arm_seed: `{arm: {seed: {metric: scores}}}` (see the module docstring).
      reference: the arm the others are compared with (the study's `full`).
      dimensions: metric -> dimension for metrics DIMENSION_MAP does not place (task-file tasks).
    """
    if reference not in results_by_arm_seed:
        raise ValueError(f"reference arm {reference!r} not among {sorted(results_by_arm_seed)}")
    arms = [reference] + [a for a in results_by_arm_seed if a != reference]
    seeds = {a: sorted(results_by_arm_seed[a], key=str) for a in arms}
    if empty := [a for a in arms if not seeds[a]]:
        raise ValueError(f"arm(s) {empty} have no seeds")
    keysets = [set(results_by_arm_seed[a][s]) for a in arms for s in seeds[a]]
    metrics = sorted(set.intersection(*keysets))
    est = _estimate(results_by_arm_seed, arms, seeds, metrics, replicates, np.random.default_rng(rng_seed))
    dim_of = {m: (dimensions or {}).get(m) or dims.dimension_of(m) for m in metrics}
    order = [d for d in dims.DIMENSIONS if d in dim_of.values()]
    order += sorted(set(dim_of.values()) - set(order))
    rows = []
    for d in order:
        members = [m for m in metrics if dim_of[m] == d]
        directions = {dims.higher_is_better(m) for m in members}
        if len(directions) > 1:
            raise ValueError(f"dimension {d!r} mixes lower- and higher-is-better metrics: {members}")
        higher = directions.pop()
        for name, kind, group in [(d, "dimension", members)] + [(m, "metric", [m]) for m in members]:
            row = {"name": name, "kind": kind, "dimension": d, "higher_is_better": higher}
            if kind == "dimension":
                row["metrics"] = group
            # A dimension's score is the mean of its metrics' scores, in every resample too.
            pt = {a: float(np.mean([est.point[a][m] for m in group])) for a in arms}
            bt = {a: np.mean([est.boot[a][m] for m in group], axis=0) for a in arms}
            by_seed = {
                a: {
                    s: float(np.mean([est.per_seed[a][m][s] for m in group]))
                    for s in est.per_seed[a][group[0]]
                }
                for a in arms
            }
            row["arms"] = {
                a: _stats(
                    pt[a], bt[a], by_seed[a], pt[reference], bt[reference], a == reference, higher, confidence
                )
                for a in arms
            }
            rows.append(row)
    table = {
        "reference": reference,
        "arms": arms,
        "seeds": {a: [str(s) for s in seeds[a]] for a in arms},
        "confidence": confidence,
        "bootstrap": {
            "replicates": replicates,
            "rng_seed": rng_seed,
            "design": "crossed seeds x items, paired",
        },
        "dropped_metrics": sorted(set.union(*keysets) - set(metrics)),
        "rows": rows,
    }
    return table, markdown(table)


@dataclasses.dataclass
class _Estimates:
    """Per arm and metric: the mean, its bootstrap replicates, and the mean of each seed."""

    point: dict[str, dict[str, float]]
    boot: dict[str, dict[str, np.ndarray]]
    per_seed: dict[str, dict[str, dict[str, float]]]


def _estimate(results, arms, seeds, metrics, replicates: int, rng: np.random.Generator) -> _Estimates:
    reference = arms[0]
    seed_w = {reference: _draws(rng, len(seeds[reference]), replicates)}
    for a in arms[1:]:  # the same seed names: paired with the reference's draw
        same = [str(s) for s in seeds[a]] == [str(s) for s in seeds[reference]]
        seed_w[a] = seed_w[reference] if same else _draws(rng, len(seeds[a]), replicates)
    est = _Estimates({a: {} for a in arms}, {a: {} for a in arms}, {a: {} for a in arms})
    for m in metrics:
        mats = {a: _matrix([results[a][s][m] for s in seeds[a]], f"{a}/{m}") for a in arms}
        ids = mats[reference][0]
        if other := [a for a, (a_ids, _) in mats.items() if a_ids != ids]:
            raise ValueError(f"{m}: arm(s) {other} score other items than {reference!r}")
        item_w = _draws(rng, len(ids), replicates)  # one item draw for every arm and seed
        for a, (_, x) in mats.items():
            est.point[a][m], est.boot[a][m] = float(x.mean()), _replicates(x, seed_w[a], item_w)
            est.per_seed[a][m] = {str(s): float(row.mean()) for s, row in zip(seeds[a], x, strict=True)}
    return est


def _fmt_ci(value: float, ci: list[float], signed: bool) -> str:
    f = "{:+.1f}" if signed else "{:.3f}"
    return f"{f.format(value)} [{f.format(ci[0])}, {f.format(ci[1])}]"


def markdown(table: dict) -> str:
    """The table as Markdown: one column of scores per arm, one of gains (+ = better) per other arm."""
    ref, arms = table["reference"], table["arms"]
    pct = round(100 * table["confidence"])
    head = ["", *[f"{a} ({len(table['seeds'][a])} seeds)" for a in arms], *[f"Δ% {a}" for a in arms[1:]]]
    lines = [
        f"Reference arm: `{ref}`. Δ% = 100·(s_arm − s_ref)/s_ref, signed so that + is better (flipped on "
        f"↓ rows, where lower is better); [lo, hi]: {pct}% percentile bootstrap CI over seeds and items "
        f"({table['bootstrap']['replicates']} resamples, rng seed {table['bootstrap']['rng_seed']}).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in table["rows"]:
        name = row["name"] + ("" if row["higher_is_better"] else " ↓")
        cells = [f"**{name}**" if row["kind"] == "dimension" else name]
        cells += [f"{row['arms'][a]['score']:.3f}" for a in arms]
        for a in arms[1:]:
            s = row["arms"][a]
            if s["gain_pct"] is None:
                cells.append(f"n/a (Δ {_fmt_ci(s['delta_abs'], s['delta_abs_ci'], True)})")
            else:
                cells.append(_fmt_ci(s["gain_pct"], s["gain_pct_ci"], True))
        lines.append("| " + " | ".join(cells) + " |")
    if table["dropped_metrics"]:
        lines += ["", f"Not in every arm and seed, left out: {', '.join(table['dropped_metrics'])}."]
    return "\n".join(lines) + "\n"


def write(out_dir: str, table: dict, md: str) -> tuple[str, str]:
    """Writes `capability.json` and `capability.md` into `out_dir`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = os.path.join(out_dir, "capability.json"), os.path.join(out_dir, "capability.md")
    with open(paths[0], "w") as f:
        json.dump(table, f, indent=1)
    with open(paths[1], "w") as f:
        f.write(md)
    return paths


def metrics_from(loss_results: Mapping | None = None, task_results: Mapping | None = None) -> dict[str, dict]:
    """`{metric: {item: score}}` of one run: `bpb/<domain>` from `evals.loss.evaluate`'s result (one item
    per evaluated sequence, or the domain's aggregate alone from results without `seq_*`) and
    `suite/family` from `suite.evaluate`'s result (pass@1 per task id)."""
    out: dict[str, dict] = {}
    for domain, r in (loss_results or {}).items():
        if r.get("seq_nats"):
            pairs = zip(r["seq_nats"], r["seq_bytes"], strict=True)
            out[f"bpb/{domain}"] = {
                f"{domain}/{i}": n / (math.log(2) * max(b, 1)) for i, (n, b) in enumerate(pairs)
            }
        else:
            out[f"bpb/{domain}"] = {domain: float(r["bpb"])}
    for item in (task_results or {}).get("items", []):
        out.setdefault(item["metric"], {})[item["id"]] = float(item["score"])
    return out


def run_metrics(workdir: str, step: int | None = None) -> dict[str, dict]:
    """`metrics_from` a run's `eval/step_<step>.json` and `eval/tasks_step_<step>.json` (either may be
    missing); `step` defaults to the latest step with either file."""
    eval_dir = os.path.join(workdir, "eval")
    if step is None:
        found = [
            int(m[1]) for f in os.listdir(eval_dir) if (m := re.fullmatch(r"(?:tasks_)?step_(\d+)\.json", f))
        ]
        if not found:
            raise FileNotFoundError(f"no eval results under {eval_dir}")
        step = max(found)
    loaded = {}
    for key, name in (("loss", f"step_{step}.json"), ("tasks", f"tasks_step_{step}.json")):
        path = os.path.join(eval_dir, name)
        if os.path.exists(path):
            with open(path) as f:
                loaded[key] = json.load(f)
    if not loaded:
        raise FileNotFoundError(f"no eval results for step {step} under {eval_dir}")
    return metrics_from(loaded.get("loss", {}).get("domains"), loaded.get("tasks"))
