"""Train-step throughput and MFU of the dense baseline and the MoE, measured in one process.

  python benchmarks/train_step.py                 # quickstart model (size micro, seq 256, batch 16)
  python benchmarks/train_step.py --size small --seq_len 512 --batch 8   # REFERENCE.md section 5 size

MFU = model FLOPs/s (6 * active params + 12 * layers * seq * width per token; see
`ModelConfig.flops_per_token`) divided by the float32 matmul peak measured here (a 2048^2 `jnp.dot`),
so figures are ratios taken in the same period. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mixlab import configlib, data, optim, sharding, train
from mixlab.models import ModelConfig


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def bench(model: ModelConfig, seq_len: int, batch: int, steps: int) -> dict:
    mesh = sharding.make_mesh({"data": -1})
    setup = train.Setup(
        model, data.resolve_mixture({"text": 1.0}), data.ByteTokenizer(), 100, 10, batch, seq_len
    )
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
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, model.vocab_size, (batch, seq_len), dtype=np.int32)
    b = {
        "inputs": tokens,
        "targets": np.roll(tokens, -1, axis=1),
        "domain": np.zeros_like(tokens),
        "loss_mask": np.ones(tokens.shape, np.float32),
    }
    with sharding.use_mesh(mesh):
        state = init()
        b = {k: jax.device_put(v, batch_sharding) for k, v in b.items()}
        t0 = time.perf_counter()
        state, m = step(state, b)
        jax.block_until_ready(m["train/loss"])
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            state, m = step(state, b)
            jax.block_until_ready(m["train/loss"])
            times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    tokens_per_s = batch * seq_len / step_s
    return {
        "step_s": step_s,
        "tokens_per_s": tokens_per_s,
        "model_flops_per_s": tokens_per_s * model.flops_per_token(seq_len),
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
    p.add_argument("--dtype", default="float32")
    args = p.parse_args()
    size = dict(configlib.SIZES[args.size], vocab_size=data.ByteTokenizer.vocab_size, dtype=args.dtype)
    dense = ModelConfig(**size)
    # Same active parameters: each of the top-k experts has d_ff / top_k hidden units.
    moe = ModelConfig(
        **{**size, "d_ff": size["d_ff"] // args.top_k}, num_experts=args.experts, top_k=args.top_k
    )
    peak = matmul_peak()
    results = {"device": jax.devices()[0].device_kind, "peak_flops_per_s": peak}
    for name, cfg in (("dense", dense), (f"moe_e{args.experts}k{args.top_k}_capacity", moe)):
        r = bench(cfg, args.seq_len, args.batch, args.steps)
        r["mfu"] = r["model_flops_per_s"] / peak
        results[name] = r
        ms = r["step_s"] * 1e3
        print(f"{name:>24}: {r['tokens_per_s']:9,.0f} tok/s  step {ms:7.1f} ms  MFU {r['mfu']:.1%}")
    results["moe_over_dense_step_time"] = (
        results[f"moe_e{args.experts}k{args.top_k}_capacity"]["step_s"] / (results["dense"]["step_s"])
    )
    results["config"] = vars(args)
    print(f"peak {peak / 1e9:.1f} GFLOP/s (float32 2048^2 matmul)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
