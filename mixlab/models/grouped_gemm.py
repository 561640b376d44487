"""Which grouped-matmul backend `dispatch = "auto"` runs: a start-up probe of `jax.lax.ragged_dot`.

`jax.lax.ragged_dot` is a grouped GEMM on TPU, but some GPU backends lower it to a dense dot over every
group followed by a mask (G times the FLOPs; reported at ~15% MFU forward on one H100 where a tuned
grouped kernel reached ~78%), and on CPU it is 10-20x slower than an equal-FLOP einsum
(benchmarks/ragged_dot.py). So `auto` takes
  CPU           `dropless_blocked` (loops of plain matmuls), without probing;
  GPU / TPU     `dropless_ragged`, its grouped matmuls by `jax.lax.ragged_dot` unless the probe finds
                a dense lowering; then by tokamax's `ragged_dot` (Triton on GPU, Mosaic on TPU; the
                `kernels` extra) when it imports, else the kernel is `dropless_blocked`.
`dispatch = "dropless_ragged"` set by hand takes the same grouped-matmul choice (`ragged_dot`).
The probe compiles one ragged_dot of 8 groups (forward and backward) and reads its optimised HLO: the
matmul FLOPs it contains (every `dot` or GEMM custom call: 2 * output elements * contracted size) and
XLA's cost analysis, over the grouped ideal 2 * M * K * N. The result is cached per backend and
logged by the trainer (`describe`). Neither tokamax's kernels nor the probe's verdict on a GPU or TPU
has been measured by this project yet (no device was lent): benchmarks/device_check.sh records both.
"""

from __future__ import annotations

import functools
import math
import re

import jax
import jax.numpy as jnp

_SHAPE = re.compile(r"(\w+)\[([\d,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\(?[^=]*?)\s+([\w\-]+)\((.*)$")
_OPERAND = re.compile(r"\s*(?:(\w+\[[\d,]*\])\S*\s+)?%?([\w.\-]+)")
_GEMM = ("gemm", "matmul", "dot")  # custom-call targets that are one plain matmul (e.g. __cublas$gemm)


def _dims(text: str) -> list[int] | None:
    m = _SHAPE.search(text)
    return [int(d) for d in m.group(2).split(",") if d] if m else None


def _contracting(attrs: str, key: str) -> list[int]:
    """lhs contracting dims from `lhs_contracting_dims={1}` or a backend_config's JSON."""
    m = re.search(rf"{key}_contracting_dims=\{{([\d,]*)\}}", attrs) or re.search(
        rf'"{key}_contracting_dimensions":\[([^\]]*)\]', attrs
    )
    return [int(d.strip('"')) for d in m.group(1).split(",") if d.strip('"')] if m else []


def inspect_hlo(text: str) -> dict:
    """Matmul FLOPs, ragged-dot instructions and custom-call targets of an optimised HLO module."""
    shapes: dict[str, list[int]] = {}  # per computation; names restart in each fused computation
    flops, ragged, targets = 0.0, 0, set()
    for line in text.splitlines():
        if line.rstrip().endswith("{") and "=" not in line.split("(")[0]:
            shapes = {}  # a new computation
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        name, result, op, rest = m.groups()
        out = _dims(result)
        if out is not None:
            shapes[name] = out
        if op == "ragged-dot":
            ragged += 1
        target = re.search(r'custom_call_target="([^"]+)"', rest)
        if op == "custom-call" and target:
            targets.add(target.group(1))
        is_gemm = op == "dot" or (
            op == "custom-call" and target and any(g in target.group(1).lower() for g in _GEMM)
        )
        if not is_gemm or out is None:
            continue
        # The first operand: `%name`, or `f32[4,8]{1,0} %name` where the text carries operand types.
        first = _OPERAND.match(rest)
        lhs = _dims(first.group(1)) if first.group(1) else shapes.get(first.group(2))
        if lhs is None:
            continue
        contracted = math.prod(lhs[d] for d in _contracting(rest, "lhs") if d < len(lhs))
        flops += 2.0 * math.prod(out) * contracted
    return {"matmul_flops": flops, "ragged_ops": ragged, "custom_calls": sorted(targets)}


def verdict(info: dict, groups: int) -> str:
    """dense (> G/2 x the ideal FLOPs), ragged_op, custom_call, not_dense or unknown."""
    dense = max(info["matmul_flops_over_ragged"], info["cost_flops_over_ragged"] or 0.0)
    if dense > groups / 2:
        return "dense"
    if info["ragged_ops"]:
        return "ragged_op"
    if any(not any(g in t.lower() for g in _GEMM) for t in info["custom_calls"]):
        return "custom_call"
    return "not_dense" if info["matmul_flops"] else "unknown"


def lowering(fn, args, ideal_flops: float, groups: int) -> dict:
    """The HLO facts of `jax.jit(fn)(*args)` against `ideal_flops`, and their `verdict`."""
    compiled = jax.jit(fn).lower(*args).compile()
    info = inspect_hlo(compiled.as_text())
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    cost_flops = float(cost["flops"]) if cost and "flops" in cost else None
    info |= {
        "ideal_flops": ideal_flops,
        "matmul_flops_over_ragged": info["matmul_flops"] / ideal_flops,
        "cost_analysis_flops": cost_flops,
        "cost_flops_over_ragged": cost_flops / ideal_flops if cost_flops is not None else None,
    }
    info["lowering"] = verdict(info, groups)
    return info


@functools.cache
def probe(backend: str, groups: int = 8, rows: int = 2048, k: int = 256, n: int = 256) -> str:
    """`dense` if ragged_dot (forward or forward + backward) lowers to a dense dot on `backend`, else
    its forward's verdict. Compile only, abstract inputs: ~1 s, no device memory."""
    dt = jnp.bfloat16 if backend != "cpu" else jnp.float32
    # No shardings: under a model's mesh (a trace may ask first) the probe compiles replicated over
    # it, the same per-device program.
    shapes = [
        jax.ShapeDtypeStruct((rows, k), dt),
        jax.ShapeDtypeStruct((groups, k, n), dt),
        jax.ShapeDtypeStruct((groups,), jnp.int32),
    ]

    def fwd(x, w, sizes):
        return jax.lax.ragged_dot(x, w, sizes)

    def fwd_bwd(x, w, sizes):
        return jax.grad(lambda x, w: jnp.sum(fwd(x, w, sizes).astype(jnp.float32) ** 2), argnums=(0, 1))(x, w)

    ideal = 2.0 * rows * k * n
    verdicts = [lowering(f, shapes, c * ideal, groups)["lowering"] for f, c in ((fwd, 1), (fwd_bwd, 3))]
    return "dense" if "dense" in verdicts else verdicts[0]


@functools.cache
def _tokamax_ragged_dot():
    """tokamax.ragged_dot, or None when the `kernels` extra is not installed."""
    try:
        import tokamax  # ~2 s: imported only where jax.lax.ragged_dot lowers dense
    except ImportError:
        return None
    from absl import flags

    # tokamax reads its options as absl flags and, where nobody parsed them (pytest, a notebook, a
    # script without absl.app), parses sys.argv itself and fails on its flags: take the defaults.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    return tokamax.ragged_dot


def ragged_backend(backend: str | None = None) -> str:
    """Who runs `dropless_ragged`'s grouped matmuls on `backend`: "jax" (jax.lax.ragged_dot),
    "tokamax", or "none" (a dense lowering and no tokamax)."""
    backend = backend or jax.default_backend()
    if backend == "cpu" or probe(backend) != "dense":
        return "jax"  # on CPU ragged_dot is slow but `auto` never picks it there
    return "tokamax" if _tokamax_ragged_dot() is not None else "none"


def ragged_dot(x_MK: jax.Array, w_GKN: jax.Array, sizes_G: jax.Array) -> jax.Array:
    """`jax.lax.ragged_dot` or tokamax's, as `ragged_backend` decides for the backend being traced for."""
    if ragged_backend() == "tokamax":
        return _tokamax_ragged_dot()(x_MK, w_GKN, sizes_G)
    return jax.lax.ragged_dot(x_MK, w_GKN, sizes_G)


def auto_kernel(backend: str | None = None) -> str:
    """The dropless kernel `dispatch = "auto"` runs on `backend` (default: JAX's default backend)."""
    backend = backend or jax.default_backend()
    if backend == "cpu":
        return "dropless_blocked"
    return "dropless_blocked" if ragged_backend(backend) == "none" else "dropless_ragged"


def describe(dispatch: str) -> str:
    """For the trainer's start-up log: what `dispatch` runs here, and why."""
    backend = jax.default_backend()
    kernel = auto_kernel(backend) if dispatch == "auto" else dispatch
    prefix = "auto -> " if dispatch == "auto" else ""
    if backend != "cpu" and kernel == "dropless_ragged":
        lowering = f"jax.lax.ragged_dot lowers as '{probe(backend)}' on {backend}"
        return f"{prefix}{kernel} via {ragged_backend(backend)}'s ragged_dot ({lowering})"
    if backend != "cpu" and dispatch == "auto":  # the fallback
        return f"{prefix}{kernel} (jax.lax.ragged_dot lowers dense on {backend}; no tokamax installed)"
    return prefix + kernel + (" (CPU)" if dispatch == "auto" else "")
