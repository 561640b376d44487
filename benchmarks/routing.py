"""Routing analysis on large synthetic traces: every metric, saturation, cross-arm JSD and routing.json.

  PYTHONPATH=. python benchmarks/routing.py          # 1M tokens x 8 layers, top-2 of 16 experts, 6 domains

Two arms x two checkpoints of synthetic traces (domain-biased routers; the arm and the earlier step
perturb a share of the routing), analysed as `mixlab.analysis.analyse` does after collection. Goal: the
whole analysis of one 1M-token trace set in under 60 s on 2 CPU cores. `--smoke` (20k tokens, 2
layers, 4 experts, 3 domains) only checks that it runs. The last line printed is one JSON object with
the timings (keys: benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from mixlab.analysis import compare, export, metrics, options
from mixlab.analysis.trace import Trace

GOAL_S = 60.0


def synthetic_trace(rng, tokens: int, layers: int, experts: int, domains: int, seq_len: int = 256) -> Trace:
    """Distinct top-2 sets drawn from per-(layer, domain) Dirichlet preferences; whole sequences."""
    domain_T = np.repeat(rng.integers(0, domains, tokens // seq_len + 1), seq_len)[:tokens]
    position_T = np.arange(tokens) % seq_len
    prefs_NDE = rng.dirichlet(np.full(experts, 0.5), size=(layers, domains))
    experts_NTK = np.empty((layers, tokens, 2), np.int32)
    for layer in range(layers):  # inverse-CDF sampling: vectorised over tokens
        cdf_TE = np.cumsum(prefs_NDE[layer], axis=-1)[domain_T]
        first_T = np.minimum((rng.random(tokens)[:, None] > cdf_TE).sum(-1), experts - 1)
        experts_NTK[layer, :, 0] = first_T
        experts_NTK[layer, :, 1] = (first_T + 1 + rng.integers(0, experts - 1, tokens)) % experts
    gates_NTK = np.sort(rng.random((layers, tokens, 2)).astype(np.float32), axis=-1)[..., ::-1]
    token_T = rng.zipf(1.3, tokens) % 50_000  # a skewed vocabulary, like text
    names = [f"domain_{d}" for d in range(domains)]
    return Trace.build(experts_NTK, gates_NTK, domain_T, token_T, position_T, names, experts)


def perturbed(rng, tr: Trace, share: float) -> Trace:
    """The same tokens with `share` of the second choices moved to another expert (when distinct)."""
    e_NTK = tr.experts_NTK.copy()
    move = rng.random(e_NTK.shape[:2]) < share
    new = (e_NTK[..., 1] + 1 + rng.integers(0, tr.num_experts - 1, move.shape)) % tr.num_experts
    e_NTK[..., 1] = np.where(move & (new != e_NTK[..., 0]), new, e_NTK[..., 1])
    return Trace.build(
        e_NTK, tr.gates_NTK, tr.domain_T, tr.token_T, tr.position_T, tr.domain_names, tr.num_experts
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--domains", type=int, default=6)
    parser.add_argument("--smoke", action="store_true", help="20k tokens, 2 layers, 4 experts: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.tokens, args.layers, args.experts, args.domains = 20_000, 2, 4, 3
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    final = synthetic_trace(rng, args.tokens, args.layers, args.experts, args.domains)
    early, arm = perturbed(rng, final, 0.3), perturbed(rng, final, 0.1)
    make_s = time.perf_counter() - t0

    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        final = Trace.load(final.save(os.path.join(tmp, "traces_step_2.npz")))
        timings["save_load_npz_s"] = time.perf_counter() - t
    t = time.perf_counter()
    metrics.counts(final.experts_NTK, final.domain_T, final.num_domains, final.num_experts)
    timings["counts_s"] = time.perf_counter() - t
    t = time.perf_counter()
    m_final = {**metrics.trace_metrics(final), "domain_names": final.domain_names}
    timings["trace_metrics_s"] = time.perf_counter() - t
    t = time.perf_counter()
    m_early = {**metrics.trace_metrics(early), "domain_names": early.domain_names}
    m_arm = {**metrics.trace_metrics(arm), "domain_names": arm.domain_names}
    timings["trace_metrics_2_more_s"] = time.perf_counter() - t
    warnings: list[str] = []
    t = time.perf_counter()
    sat = compare.saturation_series({1: early, 2: final}, run="ref", warnings=warnings)
    timings["saturation_s"] = time.perf_counter() - t
    t = time.perf_counter()
    kw = dict(ref_name="ref", arm_name="arm", step_label="step 2", warnings=warnings)
    cross = {"arm": {2: {"reference_step": 2, "layers": compare.cross_arm_jsd(m_final, m_arm, **kw)}}}
    timings["cross_arm_jsd_s"] = time.perf_counter() - t
    t = time.perf_counter()
    info = {"num_experts": args.experts, "top_k": 2, "moe_layers": list(range(args.layers)), "mixture": {}}
    runs = [
        options.RunRouting("ref", "-", info, {1: early, 2: final}, {}, {1: m_early, 2: m_final}, sat),
        options.RunRouting("arm", "-", info, {2: arm}, {}, {2: m_arm}),
    ]
    text = json.dumps(export.to_json(runs, "ref", cross, {}, {}, warnings, options.Options()))
    timings["routing_json_s"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        export.plot_all(runs, cross, tmp)
        timings["plots_s"] = time.perf_counter() - t
    total = sum(timings.values())
    # One trace set: load it, count, every metric, saturation against the final step, cross-arm JSD.
    one_set = sum(timings[k] for k in ("save_load_npz_s", "counts_s", "trace_metrics_s", "saturation_s"))
    one_set += timings["cross_arm_jsd_s"]
    for k, v in timings.items():
        print(f"{k:>24}: {v:7.2f} s")
    mean_sat = float(np.mean(sat[1]["overall_N"]))
    expected = 1 - 0.5 * 0.3 * (args.experts - 2) / (args.experts - 1)
    print(f"saturation step 1 vs 2 (30% of second choices moved): {mean_sat:.3f} (expected {expected:.3f})")
    size = f"3 traces of {args.tokens:,} tokens x {args.layers} layers"
    print(f"total {total:.1f} s, {size} (goal < {GOAL_S:.0f} s)")
    result = {
        "tokens": args.tokens,
        "layers": args.layers,
        "experts": args.experts,
        "top_k": 2,
        "domains": args.domains,
        "make_traces_s": round(make_s, 2),
        **{k: round(v, 3) for k, v in timings.items()},
        "one_trace_set_s": round(one_set, 2),
        "total_s": round(total, 2),
        "routing_json_mb": round(len(text) / 1e6, 2),
        "goal_s": GOAL_S,
        "meets_goal": total < GOAL_S,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
