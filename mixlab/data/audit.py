"""The mixture audit: requested vs realised tokens per domain for one arm, and its delta to the base.

`audit(...)` resolves the arm (plan.py), draws N sequences from the real training pipeline (one
process, the run's global batch, the run's seed: row for row what a run on any number of processes
reads, see pipeline.py) and reports, for every registry domain:

  requested_share          the arm's token share over its run (stages weighted by their steps)
  realised_share           share of the N drawn sequences
  tokens_run_requested     over the arm's run budget (steps x global batch x seq_len; hold shrinks it)
  tokens_run_base          the same for the base arm (no interventions) over the base budget
  tokens_run_delta         requested - base: what the arm adds or takes away (e.g. remove:code adds math)
  tokens_sample_requested  expected over the N sequences, stage by stage
  tokens_sample_realised   counted in the N sequences
  available_tokens         one epoch of the domain's train split (domains the arm reads)
  epochs                   times the arm's run reads the domain over (seq_len + 1 tokens a sequence)

plus `max_window_error_pp`: the worst |realised - requested| share over any 1,000 consecutive drawn
sequences, in percentage points (the pipeline promises < 0.5), the tokenizer, and for a mixture file
`sources`: per domain its documents and tokens per split and per source the files read and the
documents skipped (invalid UTF-8, empty) with examples (`sources.Catalog.manifest`).
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import ml_collections
import numpy as np

from mixlab import configlib
from mixlab.data import pipeline
from mixlab.data.plan import DataPlan, resolve_plan

WINDOW = 1000


def drawn_domains(data_cfg: Any, *, batch_size: int, seed: int, sequences: int) -> np.ndarray:
    """Domain ids of the first `sequences` sequences of the single-process training stream."""
    ds = pipeline.make_train_dataset(data_cfg, batch_size=batch_size, seed=seed, shard_index=0, shard_count=1)
    batches = itertools.islice(ds, -(-sequences // batch_size))
    return np.concatenate([b["domain"][:, 0] for b in batches])[:sequences]


def expected_weights(plan: DataPlan, sequences: int) -> np.ndarray:
    """float[sequences, domains]: the requested weights of each drawn sequence's stage."""
    table = np.array([s.mixture.weights for s in plan.stages])
    steps = np.arange(sequences) // plan.global_batch_size
    starts = np.array([s.start_step for s in plan.stages])
    return table[np.searchsorted(starts, steps, side="right") - 1]


def max_window_error_pp(ids: np.ndarray, expected: np.ndarray) -> float | None:
    """Worst |realised - requested| share over any WINDOW consecutive sequences, in points."""
    if len(ids) < WINDOW:
        return None
    onehot = np.eye(expected.shape[1])[ids]
    diff = np.concatenate([np.zeros((1, expected.shape[1])), np.cumsum(onehot - expected, axis=0)])
    return round(float(np.abs(diff[WINDOW:] - diff[:-WINDOW]).max() / WINDOW * 100), 9)  # drop fp noise


def audit(
    data_cfg: Any, *, steps: int, batch_size: int, seed: int, sequences: int, check_repeat: bool = False
) -> dict[str, Any]:
    """The audit report (see the module docstring) of the arm in `data_cfg`.

    Args:
      data_cfg: the `data` config section.
      steps: the base run's train steps; with batch_size and seq_len it fixes the token budget.
      batch_size: global batch, in sequences.
      seed: the run's data seed.
      sequences: how many sequences to draw from the pipeline (N).
      check_repeat: raise (as the trainer does) when a domain goes past data.max_epochs.
    """
    plan = resolve_plan(data_cfg, global_batch_size=batch_size)
    available = {n: plan.catalog.available_tokens(n) for n in plan.active}
    epochs = plan.check_repetition(steps, available) if check_repeat else plan.epochs(steps, available)
    run_steps = plan.run_steps(steps)
    run, base = plan.tokens(run_steps), plan.tokens(steps, base=True)
    run_total = run_steps * batch_size * plan.seq_len
    ids = drawn_domains(data_cfg, batch_size=batch_size, seed=seed, sequences=sequences)
    expected = expected_weights(plan, sequences)
    counts = np.bincount(ids, minlength=len(plan.names))
    window_error = max_window_error_pp(ids, expected)
    domains = {}
    for i, name in enumerate(plan.names):
        domains[name] = {
            "id": i,
            "requested_share": run[name] / run_total,
            "realised_share": float(counts[i] / sequences),
            "tokens_run_requested": run[name],
            "tokens_run_base": base[name],
            "tokens_run_delta": run[name] - base[name],
            "tokens_sample_requested": float(expected[:, i].sum() * plan.seq_len),
            "tokens_sample_realised": int(counts[i]) * plan.seq_len,
            "available_tokens": available.get(name),
            "epochs": epochs.get(name, 0.0),
        }
    return {
        "arm": plan.arm,
        "interventions": [str(iv) for iv in plan.interventions],
        "seq_len": plan.seq_len,
        "global_batch_size": batch_size,
        "base_steps": steps,
        "run_steps": run_steps,
        "budget_scale": plan.budget_scale,
        "run_tokens": run_total,
        "base_run_tokens": steps * batch_size * plan.seq_len,
        "max_epochs": plan.max_epochs,
        "allow_repeat": plan.allow_repeat,
        "over_max_epochs": sorted(n for n, e in epochs.items() if e > plan.max_epochs),
        "sequences": sequences,
        "max_window_error_pp": window_error,
        "stages": [
            {"start_step": s.start_step, "weights": s.mixture.as_dict(), "base_weights": s.base.as_dict()}
            for s in plan.stages
        ],
        "domains": domains,
        "tokenizer": plan.catalog.tokenizer.summary(),
        "sources": plan.catalog.manifest(),
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table, one row per domain, then a summary line."""
    head = f"{'domain':<12} {'id':>2} {'req %':>7} {'real %':>7} {'run tokens':>13} {'Δ vs base':>13}"
    head += f" {'N tok req':>11} {'N tok real':>11} {'available':>11} {'epochs':>7}"
    rows = [head]
    for name, d in report["domains"].items():
        avail = "-" if d["available_tokens"] is None else f"{d['available_tokens']:,}"
        rows.append(
            f"{name:<12} {d['id']:>2} {100 * d['requested_share']:>7.2f} {100 * d['realised_share']:>7.2f}"
            f" {d['tokens_run_requested']:>13,.0f} {d['tokens_run_delta']:>+13,.0f}"
            f" {d['tokens_sample_requested']:>11,.0f} {d['tokens_sample_realised']:>11,}"
            f" {avail:>11} {d['epochs']:>7.3f}"
        )
    err = report["max_window_error_pp"]
    rows.append(
        f"arm {report['arm']}: {report['run_steps']} steps x {report['global_batch_size']} x "
        f"{report['seq_len']} = {report['run_tokens']:,} tokens (budget scale {report['budget_scale']:g}); "
        f"N = {report['sequences']:,} sequences, worst {WINDOW}-window error "
        + ("n/a" if err is None else f"{err:.3f} pp")
    )
    for name, d in ((report.get("sources") or {}).get("domains") or {}).items():
        for s in d["sources"]:
            if s.get("skipped_invalid_utf8") or s.get("skipped_empty"):
                rows.append(
                    f"{name}: skipped {s['skipped_invalid_utf8']} invalid UTF-8 and {s['skipped_empty']} "
                    f"empty documents of {s['path']} (e.g. {'; '.join(s['skipped_examples'])})"
                )
    if report["over_max_epochs"]:
        rows.append(
            f"over data.max_epochs = {report['max_epochs']:g}: {', '.join(report['over_max_epochs'])}"
        )
    return "\n".join(rows)


def run(config: ml_collections.ConfigDict, workdir: str, *, sequences: int) -> tuple[str, dict[str, Any]]:
    """Audits a full config (its data, train.steps, train.batch_size, seed) into WORKDIR/data_audit.json."""
    with configlib.errors_as_config_errors():
        batch, seq_len = int(config.train.batch_size), int(config.data.seq_len)
        steps = configlib.to_steps(config.train.steps, total_steps=None, tokens_per_step=batch * seq_len)
        if isinstance(sequences, bool) or not isinstance(sequences, int) or sequences < 1:
            raise ValueError(f"--sequences = {sequences!r} must be a positive integer")
        report = audit(config.data, steps=steps, batch_size=batch, seed=config.seed, sequences=sequences)
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "data_audit.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    return path, report
