"""Train-step throughput and MFU of the dense baseline and the MoE per dispatch path, in one process.

  python benchmarks/train_step.py                 # quickstart model (size micro, seq 256, batch 16)
  python benchmarks/train_step.py --size small --seq_len 512 --batch 8   # REFERENCE.md section 5 size
  python benchmarks/train_step.py --dtype bfloat16 --dispatch capacity,dropless_ragged   # GPU/TPU

MFU = model FLOPs/s (6 * active params + 12 * layers * seq * width per token; see
`ModelConfig.flops_per_token`) divided by the matmul peak measured here in the compute dtype (a square
`jnp.dot`, 2048 on CPU, 8192 on accelerators). On a shared CPU the peak moves with the neighbours'
load, so the models' steps run round-robin, a peak matmul is timed right after every step, and each
model's MFU uses the median of its own steps and peaks (`mfu`); `mfu_best` pairs its fastest step
with its fastest peak; `mfu_cpu` compares CPU seconds instead of wall seconds. The MoE has 8 experts,
top-2, each of d_ff / top_k: the dense model's active parameters (plus the router). The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mixlab import configlib, data, optim, sharding, train
from mixlab.models import ModelConfig

DISPATCH = ("capacity", "dropless_blocked", "dropless_ragged")


def make_peak(dtype: str):
    """A jitted square matmul and its FLOPs; a dot of 2048 reaches ~the CPU's best GEMM rate."""
    n = 2048 if jax.default_backend() == "cpu" else 8192
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()

    def run() -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        f(a).block_until_ready()
        return time.perf_counter() - t, time.process_time() - c

    return run, 2 * n**3


def prepare(model: ModelConfig, seq_len: int, batch: int):
    """Compiles the real train step for `model` on a random batch; returns (run one timed step ->
    (wall s, cpu s), compile s)."""
    mesh = sharding.make_mesh({"data": -1})
    sharding.check_model_fits_mesh(model, mesh)
    # make_train_step and init_state read only these fields of train.Setup.
    setup = types.SimpleNamespace(model=model, mixture=types.SimpleNamespace(names=("text",)))
    tcfg = ml_collections.ConfigDict(
        dict(lr=1e-3, min_lr_ratio=0.1, b1=0.9, b2=0.95, weight_decay=0.1, grad_clip=1.0)
        | dict(lb_loss_coef=0.01, z_loss_coef=1e-3)
    )
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

    compile_s = run()[0]
    return run, compile_s


def summarize(model: ModelConfig, seq_len: int, batch: int, steps, peaks, peak_flops, compile_s) -> dict:
    times, cpu = (np.array(x) for x in zip(*steps, strict=True))
    peak_t, peak_c = (np.array(x) for x in zip(*peaks, strict=True))
    step_s, peak_s = float(np.median(times)), float(np.median(peak_t))
    flops = batch * seq_len * model.flops_per_token(seq_len)
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
        "active_params": model.param_counts()["active"],
        "total_params": model.param_counts()["total"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="micro", choices=list(configlib.SIZES))
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top_k", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--dispatch", default=",".join(DISPATCH), help=f"comma-separated, of {DISPATCH}")
    p.add_argument("--capacity_factor", type=float, default=1.25)
    p.add_argument("--moe_group_size", type=int, default=0)
    args = p.parse_args()
    size = dict(configlib.SIZES[args.size], vocab_size=data.ByteTokenizer.vocab_size, dtype=args.dtype)
    models = {"dense": ModelConfig(**size)}
    for d in args.dispatch.split(","):
        models[f"moe_e{args.experts}k{args.top_k}_{d}"] = ModelConfig(
            **{**size, "d_ff": size["d_ff"] // args.top_k},  # same active parameters as dense
            num_experts=args.experts,
            top_k=args.top_k,
            dispatch=d,
            capacity_factor=args.capacity_factor,
            moe_group_size=args.moe_group_size,
        )
    peak_run, peak_flops = make_peak(args.dtype)
    runs = {name: prepare(cfg, args.seq_len, args.batch) for name, cfg in models.items()}
    # Round-robin: each model's steps and the peak share the same stretches of neighbours' load.
    steps = {name: [] for name in models}
    peaks = {name: [] for name in models}
    for _ in range(args.steps):
        for name, (run, _) in runs.items():
            steps[name].append(run())
            peaks[name].append(peak_run())
    results = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend()}
    for name, cfg in models.items():
        r = summarize(cfg, args.seq_len, args.batch, steps[name], peaks[name], peak_flops, runs[name][1])
        results[name] = r
        print(
            f"{name:>28}: {r['tokens_per_s']:9,.0f} tok/s  step {r['step_s'] * 1e3:8.1f} ms  "
            f"MFU {r['mfu']:.1%} (best {r['mfu_best']:.1%}, cpu-time {r['mfu_cpu']:.1%})  "
            f"peak {r['peak_flops_per_s'] / 1e9:.0f} GFLOP/s",
            flush=True,
        )
    for name in models:
        if name != "dense":
            results[f"{name}_over_dense_step_time"] = results[name]["step_s"] / results["dense"]["step_s"]
    results["config"] = vars(args)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
