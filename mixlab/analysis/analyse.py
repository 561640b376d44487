"""The routing analysis: traces (collected, or reused from OUT) -> metrics -> routing.json, summary.md, plots.

`analyse(workdirs, out, options)` is what `python -m experiments.routing` runs. Per run (named by
`run_name`) it selects steps (`step`, the latest, or every checkpoint), collects or reuses each
`OUT/<run>/traces_step_<S>.npz`, computes the single-trace metrics (`metrics.py`), router saturation
over the series and, against the reference arm, cross-arm JSD and the competition/synergy index
(`compare.py`). Training-time counts (`routing_train_counts.json`) are analysed whenever present, so
`traces=False` watches a run without any forward pass.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from mixlab import configlib
from mixlab.analysis import collect, compare, export, metrics, trace
from mixlab.analysis.options import Options, RunRouting
from mixlab.analysis.trace import Trace
from mixlab.metric_writer import logger


def _meta_matches(meta: dict | None, opts: Options, domains: tuple[str, ...]) -> bool:
    return (
        meta is not None
        and meta.get("tokens_per_domain") == opts.tokens_per_domain
        and meta.get("seed") == opts.seed
        and set(opts.mask_top) <= set(meta.get("mask_top", ()))
        and tuple(meta.get("domains", ())) == domains
    )


def reusable_steps(out: str, run: str, opts: Options, domains: tuple[str, ...]) -> list[int]:
    """Steps whose trace in OUT/<run> was sampled as `opts` asks (so it can stand in for a forward)."""
    folder, steps = os.path.join(out, run), []
    for f in os.listdir(folder) if os.path.isdir(folder) else ():
        if f.startswith("traces_step_") and f.endswith(".npz"):
            step = int(f[len("traces_step_") : -len(".npz")])
            if _meta_matches(trace.read_json(trace.meta_path(out, run, step)), opts, domains):
                steps.append(step)
    return sorted(steps)


def select_steps(run: str, available: list[int], opts: Options, warnings: list[str]) -> list[int]:
    if opts.step is not None:
        if opts.step not in available:
            warnings.append(f"{run} has no step {opts.step} (has {available}); run skipped")
            return []
        return [opts.step]
    return list(available) if opts.all_steps else [max(available)]


def get_trace(run: RunRouting, step: int, out: str, opts: Options, domains: tuple[str, ...]) -> None:
    path, mpath = trace.trace_path(out, run.name, step), trace.meta_path(out, run.name, step)
    npath = trace.nll_path(out, run.name, step)
    meta = trace.read_json(mpath)
    if os.path.exists(path) and _meta_matches(meta, opts, domains):
        logger.info("Reusing %s", path)
        run.traces[step], run.collected[step] = Trace.load(path), meta
        if os.path.exists(npath):
            run.nll[step] = np.load(npath)
        return
    tr, info = collect.collect(
        run.workdir,
        step,
        tokens_per_domain=opts.tokens_per_domain,
        seed=opts.seed,
        mask_top=opts.mask_top,
        domains=domains,
        num_devices=opts.num_devices,
        batch_size=opts.batch_size,
    )
    tr.save(path)
    run.nll[step] = info.pop("nll_T")
    np.save(npath, run.nll[step])
    meta = {
        "run": run.name,
        "workdir": os.path.abspath(run.workdir),
        "step": step,
        "tokens_per_domain": opts.tokens_per_domain,
        "seed": opts.seed,
        "mask_top": list(opts.mask_top),
        "domains": list(domains),
        **info,
    }
    with open(mpath, "w") as f:
        json.dump(meta, f, indent=1)
    logger.info("Wrote %s", path)
    run.traces[step], run.collected[step] = tr, meta


def run_name(workdir: str) -> str:
    """A run's name: its folder's, or the parent's for a sweep's `<arm>/seed_<s>` (seeds are analysed
    separately, so the arm names the run)."""
    parts = os.path.normpath(workdir).split(os.sep)
    if re.fullmatch(r"seed_\d+", parts[-1]) and len(parts) > 1:
        return parts[-2]
    return parts[-1]


def load_run(workdir: str, out: str, opts: Options, warnings: list[str]) -> RunRouting:
    """One run's traces and metrics; a workdir that is not an MoE training run is a ConfigError."""
    setup = collect.check_moe(workdir)
    run = RunRouting(run_name(workdir), workdir, collect.describe(setup))
    counts = trace.read_train_counts(workdir)
    if counts is not None:
        n_NDE, names, since = counts
        run.train = {
            **metrics.count_metrics(n_NDE, run.info["top_k"], opts.delta),
            "domain_names": names,
            "since_step": since,
        }
    elif not opts.traces:
        warnings.append(f"{run.name}: no routing_train_counts.json in {workdir}")
    if not opts.traces:
        return run
    domains = tuple(opts.domains or setup.mixture.names)
    available = sorted(
        set(collect.checkpoint_steps(workdir)) | set(reusable_steps(out, run.name, opts, domains))
    )
    if not available:
        raise configlib.ConfigError(f"no checkpoint under {os.path.join(workdir, 'checkpoints')}")
    for step in select_steps(run.name, available, opts, warnings):
        get_trace(run, step, out, opts, domains)
        run.metrics[step] = {
            **metrics.trace_metrics(run.traces[step], opts.delta),
            "domain_names": run.traces[step].domain_names,
        }
        for name, n in run.traces[step].tokens_per_domain().items():
            if n == 0:
                warnings.append(f"{run.name} step {step}: domain {name!r} has no tokens in the sample")
    if opts.all_steps:
        if len(run.traces) < 2:
            warnings.append(f"saturation {run.name}: only step(s) {sorted(run.traces)}; needs two")
        run.saturation = compare.saturation_series(run.traces, run=run.name, warnings=warnings)
    return run


def paired_se(ref: RunRouting, s_ref: int, arm: RunRouting, s_arm: int) -> dict[str, float]:
    """Per-domain standard error of the mean per-token loss difference (arm - reference), when both
    routed the same tokens and their nll was kept; else {} (competition falls back to unpaired)."""
    a, r = arm.nll.get(s_arm), ref.nll.get(s_ref)
    if a is None or r is None or not ref.traces[s_ref].same_tokens(arm.traces[s_arm]):
        return {}
    tr, out = ref.traces[s_ref], {}
    for d, name in enumerate(tr.domain_names):
        diff = (a - r)[tr.domain_T == d].astype(np.float64)
        if len(diff) > 1:
            out[name] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    return out


def compare_arms(runs: list[RunRouting], reference: str, warnings: list[str]) -> tuple[dict, dict, dict]:
    """Against `reference`: cross-arm JSD of the traces {arm: {step: {...}}}, of the training counts
    {arm: {layer: {domain}}}, and the competition index {arm: {step: {...}}}."""
    ref = next(r for r in runs if r.name == reference)
    cross, cross_train, comp = {}, {}, {}
    for arm in runs:
        if arm is ref:
            continue
        if arm.train is not None and ref.train is not None:
            cross_train[arm.name] = compare.cross_arm_jsd(
                ref.train,
                arm.train,
                ref_name=ref.name,
                arm_name=arm.name,
                step_label="training counts",
                warnings=warnings,
            )
        if not arm.metrics:
            continue
        cross[arm.name], comp[arm.name] = {}, {}
        pairs = compare.step_pairs(
            sorted(ref.metrics), sorted(arm.metrics), ref_name=ref.name, arm_name=arm.name, warnings=warnings
        )
        for s_ref, s_arm in pairs:
            label = f"step {s_arm}" if s_ref == s_arm else f"step {s_arm} (reference step {s_ref})"
            kw = dict(ref_name=ref.name, arm_name=arm.name, step_label=label, warnings=warnings)
            layers = compare.cross_arm_jsd(ref.metrics[s_ref], arm.metrics[s_arm], **kw)
            cross[arm.name][s_arm] = {"reference_step": s_ref, "layers": layers}
            sides = [
                {
                    "mixture": r.info["mixture"],
                    "loss": r.collected[s].get("loss", {}),
                    "domain_names": r.metrics[s]["domain_names"],
                    "overlap_NDD": r.metrics[s]["overlap_NDD"],
                }
                for r, s in ((ref, s_ref), (arm, s_arm))
            ]
            sides[0]["paired_se"] = paired_se(ref, s_ref, arm, s_arm)
            result = compare.competition(*sides, **kw)
            if result is not None:
                comp[arm.name][s_arm] = {"reference_step": s_ref, **result}
    return cross, cross_train, comp


def analyse(workdirs: list[str], out: str, reference: str | None = None, opts: Options | None = None) -> dict:
    """Runs the whole analysis and writes OUT/routing.json, OUT/summary.md and OUT/plots/*.png."""
    opts = Options() if opts is None else opts
    names = [run_name(w) for w in workdirs]
    if len(set(names)) != len(names):
        raise configlib.ConfigError(f"workdirs must have distinct names (got {names})")
    if reference is not None:
        ref_name = run_name(reference)
        if ref_name not in names:
            raise configlib.ConfigError(f"--reference {reference} is not one of --workdirs")
    else:
        ref_name = names[0]
    os.makedirs(out, exist_ok=True)
    warnings: list[str] = []
    runs = [load_run(w, out, opts, warnings) for w in workdirs]
    cross, cross_train, comp = compare_arms(runs, ref_name, warnings)
    for w in warnings:
        logger.warning("%s", w)
    report = export.to_json(runs, ref_name, cross, cross_train, comp, warnings, opts)
    with open(os.path.join(out, "routing.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(export.summary_markdown(runs, ref_name, cross, warnings, opts))
    if opts.plots:
        export.plot_all(runs, cross, out)
    return report


def join_list_flag(argv: list[str], flag: str) -> list[str]:
    """`[..., flag, a, b, --x]` -> `[..., flag=a,b, --x]`: absl list flags take one comma-separated
    value, the command line of `experiments/routing.py` also takes them space-separated."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] != flag:
            out.append(argv[i])
            i += 1
            continue
        j = i + 1
        while j < len(argv) and not argv[j].startswith("--"):
            j += 1
        out.append(f"{flag}={','.join(argv[i + 1 : j])}")
        i = j
    return out
