"""Dropless dispatch: every routed assignment reaches its expert (no capacity, nothing dropped).

The assignments of one data shard are put in expert order (a counting sort, `sort_by_expert`); then
  dropless_ragged   `jax.lax.ragged_dot` grouped matmuls over the sorted rows (the GPU/TPU path; ~10-20x
                    slower than an einsum of the same FLOPs on CPU: benchmarks/ragged_dot.py);
  dropless_blocked  each expert's rows walked in blocks by a loop of plain matmuls (the CPU path): only
                    each expert's last block is partly wasted.
Sorting needs a shard's tokens local: under a mesh the kernels run in a `jax.shard_map` over the batch
axes, either with every expert's weights gathered to every shard (`per_data_shard`, `dropless_comm =
"gather_weights"`) or, over an `expert` axis, with the tokens sent to their experts' shards
(`expert_parallel.py`). `dispatch.experts_ffn` chooses.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from mixlab.models import grouped_gemm
from mixlab.models.ops import swiglu_ffn
from mixlab.sharding import logical_spec

Weights = tuple[jax.Array, jax.Array, jax.Array]  # w_gate_EDF, w_up_EDF, w_down_EFD in compute dtype


def blocked_rows(tokens: int, top_k: int, num_experts: int) -> int:
    """Rows per matmul of `dropless_blocked`: about a quarter of an expert's mean load, in [64, 512].
    Each expert wastes half a block on average: 8 x 128 of 8192 rows (12%) at 4096 tokens, top-2 of 8
    experts (capacity dispatch computes 25% extra at cf 1.25); blocks of 128 or 512 were no faster."""
    mean_load = tokens * top_k // num_experts
    return max(64, min(512, 1 << max(0, (mean_load // 4).bit_length() - 1)))


def dropless_ffn(
    x_BLD: jax.Array, experts_BLK: jax.Array, gates_BLK: jax.Array, w: Weights, kernel: str
) -> jax.Array:
    """The experts' output of every routed token (no drops), per data shard, with `kernel`
    `dropless_ragged` or `dropless_blocked`."""
    B, L, D = x_BLD.shape
    K, E = experts_BLK.shape[-1], w[0].shape[0]
    if kernel == "dropless_ragged":
        local = ragged_local
    else:
        block = blocked_rows(B * L // num_batch_shards(), K, E)

        def local(*args):
            return blocked_local(*args, block=block)

    flat = (x_BLD.reshape(B * L, D), experts_BLK.reshape(B * L, K), gates_BLK.reshape(B * L, K))
    y_TD = per_data_shard(local, *flat, w)
    return y_TD.reshape(B, L, D)


def sort_by_expert(experts_TK: jax.Array, num_experts: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Expert-sorted order without a sort: (row of each assignment in the sorted buffer pos_A,
    rows per expert count_E, first row of each expert start_E). Within an expert, token order."""
    expert_A = experts_TK.reshape(-1)
    onehot_AE = jax.nn.one_hot(expert_A, num_experts, dtype=jnp.int32)
    rank_A = jnp.sum((jnp.cumsum(onehot_AE, axis=0) - 1) * onehot_AE, axis=-1)
    count_E = jnp.sum(onehot_AE, axis=0)
    start_E = jnp.cumsum(count_E) - count_E
    return start_E[expert_A] + rank_A, count_E, start_E


def to_sorted(x_TD: jax.Array, pos_A: jax.Array, K: int, rows: int) -> jax.Array:
    """x_PD: row pos_A[a] holds token a // K; rows past the A assignments are zeros."""
    T = x_TD.shape[0]
    token_P = (
        jnp.full((rows,), T, jnp.int32)
        .at[pos_A]
        .set(jnp.arange(pos_A.shape[0], dtype=jnp.int32) // K, unique_indices=True)
    )
    return jnp.take(x_TD, token_P, axis=0, mode="fill", fill_value=0)


def combine(y_PD: jax.Array, pos_A: jax.Array, gates_TK: jax.Array) -> jax.Array:
    """Each token's sum of its K rows of the sorted output (row pos_A[a] for assignment a), gated."""
    T, K = gates_TK.shape
    y_TKD = jnp.take(y_PD, pos_A, axis=0).reshape(T, K, -1)
    return jnp.einsum("tkd,tk->td", y_TKD, gates_TK.astype(y_PD.dtype))


def expert_rows(
    x_PD: jax.Array, count_E: jax.Array, start_E: jax.Array, w: Weights, kernel: str, block: int
) -> jax.Array:
    """SwiGLU of each expert over its rows [start_e, start_e + count_e) of the expert-sorted buffer
    x_PD. `dropless_blocked` needs `block` rows of slack past the last expert's rows; rows past
    them are not any expert's (zeros with ragged_dot, unspecified with blocks)."""
    if kernel == "dropless_ragged":  # jax.lax.ragged_dot, or tokamax's where XLA's lowers dense
        gate_PF = grouped_gemm.ragged_dot(x_PD, w[0], count_E)
        up_PF = grouped_gemm.ragged_dot(x_PD, w[1], count_E)
        return grouped_gemm.ragged_dot(jax.nn.silu(gate_PF) * up_PF, w[2], count_E)
    return blocked_ffn(x_PD, start_E, count_E, *w, block=block)


def ragged_local(x_TD: jax.Array, experts_TK: jax.Array, gates_TK: jax.Array, w: Weights) -> jax.Array:
    """Dropless: expert-sorted rows through `jax.lax.ragged_dot` (one data shard's tokens)."""
    T, K = experts_TK.shape
    pos_A, count_E, start_E = sort_by_expert(experts_TK, w[0].shape[0])
    x_AD = to_sorted(x_TD, pos_A, K, T * K)
    return combine(expert_rows(x_AD, count_E, start_E, w, "dropless_ragged", 0), pos_A, gates_TK)


def blocked_local(
    x_TD: jax.Array, experts_TK: jax.Array, gates_TK: jax.Array, w: Weights, block: int
) -> jax.Array:
    """Dropless: expert-sorted rows through `blocked_ffn` (one data shard's tokens)."""
    T, K = experts_TK.shape
    pos_A, count_E, start_E = sort_by_expert(experts_TK, w[0].shape[0])
    # `block` rows of slack after the A assignments: an expert's last block never reads out of range.
    x_PD = to_sorted(x_TD, pos_A, K, T * K + block)
    y_PD = expert_rows(x_PD, count_E, start_E, w, "dropless_blocked", block)
    return combine(y_PD, pos_A, gates_TK)


def _ffn_block(x_bD, w_gate_DF, w_up_DF, w_down_FD):
    return swiglu_ffn(x_bD[None], w_gate_DF[None], w_up_DF[None], w_down_FD[None])[0]


def _blocked_ffn_fwd_loop(x_PD, start_E, count_E, w_gate_EDF, w_up_EDF, w_down_EFD, block):
    """Expert e's rows are [start_e, start_e + count_e); it takes them `block` at a time. A last block
    that runs into expert e+1's rows writes garbage there, which e+1 (processed later) overwrites."""
    D = x_PD.shape[1]
    y_PD = jnp.zeros_like(x_PD)
    for e in range(w_gate_EDF.shape[0]):  # static: each expert's weights are sliced once
        ws = (w_gate_EDF[e], w_up_EDF[e], w_down_EFD[e])

        def body(j, y_PD, e=e, ws=ws):
            row = start_E[e] + j * block
            y_bD = _ffn_block(jax.lax.dynamic_slice(x_PD, (row, 0), (block, D)), *ws)
            return jax.lax.dynamic_update_slice(y_PD, y_bD, (row, 0))

        y_PD = jax.lax.fori_loop(0, (count_E[e] + block - 1) // block, body, y_PD)
    return y_PD


def blocked_ffn(x_PD, start_E, count_E, w_gate_EDF, w_up_EDF, w_down_EFD, *, block: int) -> jax.Array:
    """SwiGLU of each expert over its rows of the expert-sorted buffer x_PD, in loops of `block`-row
    matmuls. The trip counts depend on the routing, so autodiff (which needs static loops) is
    replaced by a hand-written backward with the same loops."""
    return _blocked_ffn(x_PD, start_E, count_E, w_gate_EDF, w_up_EDF, w_down_EFD, block)


def _blocked_ffn_bwd_loop(block, res, dy_PD):
    x_PD, start_E, count_E, w_gate_EDF, w_up_EDF, w_down_EFD = res
    D = x_PD.shape[1]
    dx_PD = jnp.zeros_like(x_PD)
    dws = []
    for e in range(w_gate_EDF.shape[0]):
        ws = (w_gate_EDF[e], w_up_EDF[e], w_down_EFD[e])

        def body(j, carry, e=e, ws=ws):
            dx_PD, dw = carry
            row = start_E[e] + j * block
            x_bD = jax.lax.dynamic_slice(x_PD, (row, 0), (block, D))
            # Rows past this expert's count belong to later experts: no gradient into these weights.
            mine_b = j * block + jnp.arange(block) < count_E[e]
            dy_bD = jnp.where(mine_b[:, None], jax.lax.dynamic_slice(dy_PD, (row, 0), (block, D)), 0)
            _, vjp = jax.vjp(_ffn_block, x_bD, *ws)
            dx_bD, *dw_b = vjp(dy_bD)
            dx_PD = jax.lax.dynamic_update_slice(dx_PD, dx_bD, (row, 0))
            return dx_PD, tuple(a + b for a, b in zip(dw, dw_b, strict=True))

        zeros = tuple(jnp.zeros_like(wi) for wi in ws)
        dx_PD, dw = jax.lax.fori_loop(0, (count_E[e] + block - 1) // block, body, (dx_PD, zeros))
        dws.append(dw)
    dw_gate, dw_up, dw_down = (jnp.stack(d) for d in zip(*dws, strict=True))
    return dx_PD, None, None, dw_gate, dw_up, dw_down


_blocked_ffn = jax.custom_vjp(_blocked_ffn_fwd_loop, nondiff_argnums=(6,))
_blocked_ffn.defvjp(
    lambda x, s, c, wg, wu, wd, block: (
        _blocked_ffn_fwd_loop(x, s, c, wg, wu, wd, block),
        (x, s, c, wg, wu, wd),
    ),
    _blocked_ffn_bwd_loop,
)


def num_batch_shards() -> int:
    """Devices the batch is split over in the current mesh (1 without one)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return 1
    axes = logical_spec("act_batch")[0]
    return math.prod(mesh.shape[a] for a in (axes if isinstance(axes, tuple) else (axes,)))


def per_data_shard(
    fn: Callable[..., jax.Array], x_TD: jax.Array, experts_TK: jax.Array, gates_TK: jax.Array, w: Weights
) -> jax.Array:
    """Runs a dropless dispatch on each data shard's tokens (sorting needs them local); the expert
    weights are gathered to every shard."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return fn(x_TD, experts_TK, gates_TK, w)
    tokens = logical_spec("act_batch", None)
    axes = tokens[0] if isinstance(tokens[0], tuple) else (tokens[0],)

    def local(x_TD, experts_TK, gates_TK, w):
        # The weights' gradient differs per shard (it is summed over shards on the way out): say so,
        # or custom VJPs inside would have to return a replicated cotangent.
        return fn(x_TD, experts_TK, gates_TK, tuple(jax.lax.pcast(a, axes, to="varying") for a in w))

    return jax.shard_map(local, in_specs=(tokens, tokens, tokens, (P(), P(), P())), out_specs=tokens)(
        x_TD, experts_TK, gates_TK, w
    )
