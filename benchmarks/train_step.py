"""Train-step throughput and MFU of the dense baseline and the MoE per dispatch path, in one process.

  python benchmarks/train_step.py                 # quickstart model (size micro, seq 256, batch 16)
  python benchmarks/train_step.py --size small --seq_len 512 --batch 8   # the small CPU benchmark size
  python benchmarks/train_step.py --size 1b --dtype bfloat16 --seq_len 1024 --batch 8   # GPU/TPU
  python benchmarks/train_step.py --smoke         # nano, 1 layer, 2 steps: only checks that it runs

MFU = model FLOPs/s over the matmul peak measured in this process, in the compute dtype (a square
`jnp.dot`, 2048 on CPU, 8192 on accelerators). Model FLOPs are the anchors' (PaLM appendix B, nanodo,
MaxText) count, printed with the counted parameters for every model:

  FLOPs per step = tokens * (6 * N_active + 12 * num_layers * seq_len * d_model)

N_active is the parameters a token passes through *without the embeddings* (attention, MLP or routed
top-k experts plus router, norms); the tied readout is the embedding matrix, so its matmul (2 * V * D
per token forward) is not counted either: < 5% at micro size with the byte vocabulary, ~0 at 1b. The
output also gives N_active with the embeddings and the total. The attention term counts the full L x L
score and value matmuls (the causal mask's savings are not subtracted, as in the anchors).

On a shared CPU the peak moves with the neighbours' load, so on CPU the models' steps run round-robin, a
peak matmul is timed right after every step, and each model's MFU uses the median of its own steps and
peaks (`mfu`); `mfu_best` pairs its fastest step with its fastest peak; `mfu_cpu` compares CPU seconds
instead of wall seconds. On GPU/TPU (`--order auto`) the models run one after another, each freed before
the next is built, so models that do not fit side by side are still measured. The MoE has `--experts`
experts, top-k, each of d_ff / top_k: the dense model's active parameters (plus the router). The last
line printed is one JSON object (keys: benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mixlab import configlib, data, optim, sharding, train
from mixlab.models import ModelConfig, grouped_gemm

DISPATCH = ("capacity", "dropless_blocked", "dropless_ragged")
FORMULA = "tokens * (6 * N_active + 12 * num_layers * seq_len * d_model); N_active without embeddings"


def make_peak(dtype: str, n: int = 0):
    """A jitted square matmul and its FLOPs; a dot of 2048 reaches ~the CPU's best GEMM rate."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()

    def run() -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        f(a).block_until_ready()
        return time.perf_counter() - t, time.process_time() - c

    return run, 2 * n**3


def flop_counts(model: ModelConfig, seq_len: int) -> dict:
    """The anchors' FLOPs per token and the parameter counts they use (module docstring)."""
    counts = model.param_counts()
    n_active = counts["active_nonembed"]
    attention = 12 * model.num_layers * seq_len * model.d_model
    return {
        "flops_per_token": 6 * n_active + attention,
        "attention_flops_per_token": attention,
        "n_active_nonembed": n_active,
        "n_active_with_embeddings": counts["active"],
        "n_total": counts["total"],
    }


def parse_mesh(text: str) -> dict[str, int]:
    """`expert=8` or `data=2,expert=4` -> a mesh config (one axis may be -1)."""
    try:
        return {k: int(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise SystemExit(
            f"--mesh {text!r}: expected axis=size[,axis=size...], e.g. data=2,expert=4"
        ) from None


def prepare(model: ModelConfig, seq_len: int, batch: int, mesh_cfg: dict | None = None):
    """Compiles the real train step for `model` on a random batch; returns (run one timed step ->
    (wall s, cpu s), compile s, free the state)."""
    mesh = sharding.make_mesh(mesh_cfg or {"data": -1})
    sharding.check_experts_fit_mesh(model.num_experts, mesh)
    # make_train_step and init_state read only these fields of train.Setup.
    setup = types.SimpleNamespace(model=model, mixture=types.SimpleNamespace(names=("text",)))
    tcfg = ml_collections.ConfigDict(configlib.optimizer(lr=1e-3))
    tx = optim.make_optimizer(tcfg, 100, 10)
    graphdef, _, shardings, init = train.init_state(setup, tx, mesh, 0)
    batch_sharding = sharding.named(mesh, "act_batch", None)
    step = jax.jit(
        train.make_train_step(graphdef, tx, tcfg, setup),
        in_shardings=(shardings, batch_sharding),
        out_shardings=(shardings, None),
        donate_argnums=0,
    )
    tokens = np.random.default_rng(0).integers(3, model.vocab_size, (batch, seq_len), dtype=np.int32)
    b = {
        "inputs": tokens,
        "targets": np.roll(tokens, -1, axis=1),
        "domain": np.zeros_like(tokens),
        "loss_mask": np.ones(tokens.shape, np.float32),
    }
    with sharding.use_mesh(mesh):
        state = init()
        b = {k: jax.device_put(v, batch_sharding) for k, v in b.items()}
    holder = [state]

    def run() -> tuple[float, float]:
        with sharding.use_mesh(mesh):
            t, c = time.perf_counter(), time.process_time()
            holder[0], m = step(holder[0], b)
            jax.block_until_ready(m["train/loss"])
            return time.perf_counter() - t, time.process_time() - c

    def free() -> None:
        for x in jax.tree.leaves(holder[0]):
            x.delete()
        holder.clear()

    compile_s = run()[0]
    return run, compile_s, free


def summarize(model: ModelConfig, seq_len: int, batch: int, steps, peaks, peak_flops, compile_s) -> dict:
    times, cpu = (np.array(x) for x in zip(*steps, strict=True))
    peak_t, peak_c = (np.array(x) for x in zip(*peaks, strict=True))
    step_s, peak_s = float(np.median(times)), float(np.median(peak_t))
    counts = flop_counts(model, seq_len)
    flops = batch * seq_len * counts["flops_per_token"]
    return {
        "step_s": step_s,
        "step_s_min": float(times.min()),
        "tokens_per_s": batch * seq_len / step_s,
        "model_flops_per_s": flops / step_s,
        "peak_flops_per_s": peak_flops / peak_s,
        "mfu": flops / step_s / (peak_flops / peak_s),
        "mfu_best": flops / times.min() / (peak_flops / peak_t.min()),
        # FLOPs per CPU-second of the step over those of the peak matmul: blind to the neighbours'
        # load, but also to cores the step leaves idle (then it reads high).
        "mfu_cpu": flops / float(np.median(cpu)) / (peak_flops / float(np.median(peak_c))),
        "compile_s": compile_s,
        "flops_per_step": flops,
        **counts,
    }


def bench(model: ModelConfig, seq_len: int, batch: int, steps: int, peak, mesh_cfg=None) -> dict:
    """One model's `summarize` dict: `steps` timed steps, each followed by a timed `peak` (from
    `make_peak`). What benchmarks/data_pipeline.py compares the input pipeline with."""
    peak_run, peak_flops = peak
    run, compile_s, free = prepare(model, seq_len, batch, mesh_cfg)
    timed, peaks = [], []
    for _ in range(steps):
        timed.append(run())
        peaks.append(peak_run())
    free()
    return summarize(model, seq_len, batch, timed, peaks, peak_flops, compile_s)


def formula_line(name: str, model: ModelConfig, seq_len: int) -> str:
    c = flop_counts(model, seq_len)
    return (
        f"{name}: FLOPs/token = 6 * {c['n_active_nonembed']:,} + 12 * {model.num_layers} * {seq_len} * "
        f"{model.d_model} = {c['flops_per_token']:,}  (N_active {c['n_active_nonembed']:,} without "
        f"embeddings, {c['n_active_with_embeddings']:,} with; N total {c['n_total']:,})"
    )


def models_for(args) -> dict[str, ModelConfig]:
    size = dict(configlib.SIZES[args.size], vocab_size=data.ByteTokenizer.vocab_size, dtype=args.dtype)
    if args.num_layers:
        size["num_layers"] = args.num_layers
    models = {"dense": ModelConfig(**size)}
    for d in filter(None, args.dispatch.split(",")):
        kernel, _, comm = d.partition(":")  # dropless_blocked:gather_weights
        models[f"moe_e{args.experts}k{args.top_k}_{kernel}{'_' + comm if comm else ''}"] = ModelConfig(
            **{**size, "d_ff": size["d_ff"] // args.top_k},  # same active parameters as dense
            num_experts=args.experts,
            top_k=args.top_k,
            dispatch=kernel,
            dropless_comm=comm or "all_to_all",
            capacity_factor=args.capacity_factor,
            moe_group_size=args.moe_group_size,
        )
    return models


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="micro", choices=list(configlib.SIZES))
    p.add_argument("--num_layers", type=int, default=0, help="0: the size preset's")
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top_k", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument(
        "--dispatch",
        default=",".join(DISPATCH),
        help=f"comma-separated, of {DISPATCH}; a dropless one may end :all_to_all or :gather_weights "
        "(model.dropless_comm, which matters with an expert axis in --mesh)",
    )
    p.add_argument("--mesh", default="data=-1", help="e.g. expert=8 (CPU: XLA_FLAGS fake devices)")
    p.add_argument("--capacity_factor", type=float, default=1.25)
    p.add_argument("--moe_group_size", type=int, default=0)
    p.add_argument("--order", default="auto", choices=("auto", "round_robin", "sequential"))
    p.add_argument("--peak_n", type=int, default=0, help="side of the peak matmul; 0: 2048 CPU, 8192 else")
    p.add_argument("--smoke", action="store_true", help="nano, 1 layer, seq 32, batch 2, 2 steps: seconds")
    args = p.parse_args()
    if args.smoke:
        args.size, args.num_layers, args.seq_len, args.batch, args.steps = "nano", 1, 32, 2, 2
        args.peak_n = args.peak_n or 256
    order = args.order
    if order == "auto":
        order = "round_robin" if jax.default_backend() == "cpu" else "sequential"
    loadavg_start = os.getloadavg()
    mesh_cfg = parse_mesh(args.mesh)
    models = models_for(args)
    for name, cfg in models.items():
        print(formula_line(name, cfg, args.seq_len), flush=True)
    peak_run, peak_flops = peak = make_peak(args.dtype, args.peak_n)
    results = {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "formula": FORMULA,
        "peak_matmul": {"n": round((peak_flops / 2) ** (1 / 3)), "dtype": args.dtype, "flops": peak_flops},
        "order": order,
        # Who runs dropless_ragged's grouped matmuls here: jax, or tokamax where jax's lowers dense.
        "ragged_backend": grouped_gemm.ragged_backend(),
    }
    if order == "sequential":
        for name, cfg in models.items():
            results[name] = bench(cfg, args.seq_len, args.batch, args.steps, peak, mesh_cfg)
            # One line per finished model: what benchmarks/device_check.sh keeps after a timeout.
            print(f"RESULT {name} {json.dumps(results[name])}", flush=True)
    else:
        # Round-robin: each model's steps and the peak share the same stretches of neighbours' load.
        runs = {name: prepare(cfg, args.seq_len, args.batch, mesh_cfg) for name, cfg in models.items()}
        steps = {name: [] for name in models}
        peaks = {name: [] for name in models}
        for _ in range(args.steps):
            for name, (run, _, _) in runs.items():
                steps[name].append(run())
                peaks[name].append(peak_run())
        for name, cfg in models.items():
            run, compile_s, free = runs[name]
            free()
            results[name] = summarize(
                cfg, args.seq_len, args.batch, steps[name], peaks[name], peak_flops, compile_s
            )
    for name in models:
        r = results[name]
        print(
            f"{name:>28}: {r['tokens_per_s']:9,.0f} tok/s  step {r['step_s'] * 1e3:8.1f} ms  "
            f"MFU {r['mfu']:.1%} (best {r['mfu_best']:.1%}, cpu-time {r['mfu_cpu']:.1%})  "
            f"peak {r['peak_flops_per_s'] / 1e9:.0f} GFLOP/s",
            flush=True,
        )
    for name in models:
        if name != "dense":
            results[f"{name}_over_dense_step_time"] = results[name]["step_s"] / results["dense"]["step_s"]
    print(f"MFU = {FORMULA} / step time / measured matmul peak")
    results["loadavg_start"], results["loadavg_end"] = list(loadavg_start), list(os.getloadavg())
    results["config"] = vars(args)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
