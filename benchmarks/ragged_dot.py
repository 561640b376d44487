"""Does `jax.lax.ragged_dot` lower to a dense computation on this backend? HLO inspection plus timing.

  python benchmarks/ragged_dot.py          # CPU: G 8, M 4096, K 256, N 512; GPU/TPU: G 16, M 16384,
                                           # K 2048, N 4096 (the 1b MoE's e16 up-projection), bf16
  python benchmarks/ragged_dot.py --smoke  # G 4, M 256, K 64, N 64: only checks that it runs

`dropless_ragged` dispatch (mixlab/models/dropless.py) runs its experts as ragged_dots of the
expert-sorted rows x_MK with the expert weights w_GKN, group g taking `group_sizes[g]` consecutive
rows. A grouped kernel does 2 * M * K * N FLOPs; a dense lowering multiplies every row by every
group's weights (G times that) and masks. Two checks, for the forward and for forward + backward
(the gradients of x and w, what the train step runs); the HLO one is what `dispatch = "auto"` probes
at start-up (mixlab/models/grouped_gemm.py):

  HLO   the compiled (optimised) HLO text is parsed: every matmul (a `dot`, or a GEMM / matmul custom
        call) contributes 2 * output elements * contracted size; their sum over the ideal FLOPs is
        `matmul_flops_over_ragged` (~G: dense, ~1: grouped). `ragged_ops` counts ragged-dot
        instructions left for the backend's own emitter, `custom_calls` lists every custom-call target.
        `lowering` is "dense" (matmul FLOPs or XLA's cost analysis > G/2 x ideal), else "ragged_op",
        "custom_call" (a custom call that is not a plain GEMM), "not_dense" or "unknown".
  time  the ragged_dot against an equal-FLOP batched einsum `gmk,gkn->gmn` (equal groups of M/G rows),
        medians of `--repeats` calls; `ragged_over_einsum_time` ~G says the same as the HLO.

The last line printed is one JSON object (keys: benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from mixlab.models import grouped_gemm


def timed(f, args, repeats: int) -> float:
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def check(name: str, ragged, einsum, ragged_args, einsum_args, ideal: float, groups: int, repeats: int):
    info = grouped_gemm.lowering(ragged, ragged_args, ideal, groups)
    info["lowers_to_dense"] = info["lowering"] == "dense"
    info["ragged_s"] = timed(jax.jit(ragged), ragged_args, repeats)
    info["einsum_s"] = timed(jax.jit(einsum), einsum_args, repeats)
    info["ragged_over_einsum_time"] = info["ragged_s"] / info["einsum_s"]
    print(
        f"{name:>8}: lowering {info['lowering']:<11} matmul FLOPs {info['matmul_flops_over_ragged']:5.1f}x "
        f"ideal, ragged {info['ragged_s'] * 1e3:8.2f} ms vs einsum {info['einsum_s'] * 1e3:8.2f} ms "
        f"({info['ragged_over_einsum_time']:.1f}x)  custom calls: {', '.join(info['custom_calls']) or '-'}",
        flush=True,
    )
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", type=int, default=0, help="0: 8 on CPU, 16 elsewhere")
    p.add_argument("--rows", type=int, default=0, help="M; 0: 4096 on CPU, 16384 elsewhere")
    p.add_argument("--k", type=int, default=0, help="0: 256 on CPU, 2048 elsewhere")
    p.add_argument("--n", type=int, default=0, help="0: 512 on CPU, 4096 elsewhere")
    p.add_argument("--dtype", default="", help="float32 or bfloat16; '': float32 on CPU, bfloat16 elsewhere")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="G 4, M 256, K 64, N 64, float32: seconds")
    args = p.parse_args()
    if args.smoke:
        G, M, K, N, dtype = 4, 256, 64, 64, "float32"
        args.repeats = 2
    elif jax.default_backend() == "cpu":
        G, M, K, N, dtype = 8, 4096, 256, 512, "float32"
    else:
        G, M, K, N, dtype = 16, 16384, 2048, 4096, "bfloat16"
    G, M, K, N = args.groups or G, args.rows or M, args.k or K, args.n or N
    dtype, repeats = args.dtype or dtype, args.repeats
    if M % G:
        raise SystemExit(f"--rows {M} must be a multiple of --groups {G} (equal groups for the einsum)")
    kx, kw = jax.random.split(jax.random.key(0))
    x_MK = jax.random.normal(kx, (M, K), dtype)
    w_GKN = (jax.random.normal(kw, (G, K, N)) / math.sqrt(K)).astype(dtype)
    sizes_G = jnp.full((G,), M // G, jnp.int32)

    def ragged(x, w, sizes):
        return jax.lax.ragged_dot(x, w, sizes)

    def einsum(x, w):
        return jnp.einsum("gmk,gkn->gmn", x.reshape(G, M // G, K), w).reshape(M, N)

    def loss(f):
        return lambda *a: jnp.sum(f(*a).astype(jnp.float32) ** 2)

    ragged_grad = jax.grad(loss(ragged), argnums=(0, 1))
    einsum_grad = jax.grad(loss(einsum), argnums=(0, 1))
    ideal = 2.0 * M * K * N
    diff = jnp.max(jnp.abs(ragged(x_MK, w_GKN, sizes_G) - einsum(x_MK, w_GKN)).astype(jnp.float32))
    results = {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "shape": {"groups": G, "rows": M, "k": K, "n": N, "dtype": dtype},
        "max_abs_diff_vs_einsum": float(diff),
        "forward": check("forward", ragged, einsum, (x_MK, w_GKN, sizes_G), (x_MK, w_GKN), ideal, G, repeats),
        "fwd_bwd": check(
            "fwd+bwd", ragged_grad, einsum_grad, (x_MK, w_GKN, sizes_G), (x_MK, w_GKN), 3 * ideal, G, repeats
        ),
    }
    results["lowers_to_dense"] = any(results[p]["lowers_to_dense"] for p in ("forward", "fwd_bwd"))
    results["config"] = vars(args)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
