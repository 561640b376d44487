"""Moving tokens to their experts and back: capacity (GShard) and two dropless dispatches.

  capacity          each group of S tokens gives every expert C = ceil(cf * S * K / E) slots; assignments
                    take slots in priority order (all first choices of the group before any second
                    choice, then token order); an assignment that finds its expert full is dropped (its
                    token keeps the residual stream only). Tokens move by one-hot einsums on TPU (GShard)
                    and by index gathers elsewhere: the einsums cost 2 * S * E * C * D FLOPs per group
                    (a third of the experts' at S = 512, D = 512, F = 1024, E = 8), the gathers move
                    C * E * D numbers; on CPU the MoE layer's fwd+bwd took 0.86 s with einsums, 0.62 s
                    with gathers.
  dropless_ragged   assignments sorted by expert, then `jax.lax.ragged_dot` grouped matmuls (the
                    GPU/TPU path; ~10-20x slower than an einsum on CPU: benchmarks/ragged_dot.py).
  dropless_blocked  the same sorted buffer, walked per expert in blocks of rows by a loop of plain
                    matmuls (the CPU path): only each expert's last block is partly wasted.
The dropless paths sort the tokens of one data shard: under a mesh they run in a `jax.shard_map` over
the batch axes, with the expert weights gathered (no expert parallelism on these paths yet).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from mixlab.models.ops import swiglu_ffn
from mixlab.sharding import constrain, logical_spec

Weights = tuple[jax.Array, jax.Array, jax.Array]  # w_gate_EDF, w_up_EDF, w_down_EFD in compute dtype


def capacity(group_size: int, num_experts: int, top_k: int, capacity_factor: float) -> int:
    """Slots per expert per group; an expert never needs more than one slot per token."""
    return min(group_size, math.ceil(capacity_factor * group_size * top_k / num_experts))


def capacity_slots(experts_GSK: jax.Array, num_experts: int, cap: int) -> tuple[jax.Array, jax.Array]:
    """(slot position of each assignment within its expert, kept = position < cap)."""
    G, S, K = experts_GSK.shape
    onehot_GSKE = jax.nn.one_hot(experts_GSK, num_experts, dtype=jnp.int32)
    # Priority: rank k of every token before rank k+1 of any token, then token order.
    onehot_GKSE = onehot_GSKE.transpose(0, 2, 1, 3).reshape(G, K * S, num_experts)
    position_GKSE = (jnp.cumsum(onehot_GKSE, axis=1) - 1) * onehot_GKSE
    position_GSK = position_GKSE.reshape(G, K, S, num_experts).sum(-1).transpose(0, 2, 1)
    return position_GSK, position_GSK < cap


def capacity_dispatch(
    experts_GSK: jax.Array, gates_GSK: jax.Array, num_experts: int, cap: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """GShard masks: (dispatch_GSEC 0/1, combine_GSEC gate weights, kept_GSK bool)."""
    position_GSK, kept_GSK = capacity_slots(experts_GSK, num_experts, cap)
    onehot_GSKE = jax.nn.one_hot(experts_GSK, num_experts, dtype=jnp.float32)
    slot_GSKC = jax.nn.one_hot(position_GSK, cap, dtype=jnp.float32) * kept_GSK[..., None]
    dispatch_GSEC = jnp.einsum("gske,gskc->gsec", onehot_GSKE, slot_GSKC)
    combine_GSEC = jnp.einsum("gske,gskc,gsk->gsec", onehot_GSKE, slot_GSKC, gates_GSK)
    return dispatch_GSEC, combine_GSEC, kept_GSK


def _experts(x_EGCD: jax.Array, w: Weights) -> jax.Array:
    E, G, C, D = x_EGCD.shape
    x_EGCD = constrain(x_EGCD, "act_exp", "act_batch_no_exp", None, "act_embed")
    y_EGCD = swiglu_ffn(x_EGCD.reshape(E, G * C, D), *w).reshape(E, G, C, D)
    return constrain(y_EGCD, "act_exp", "act_batch_no_exp", None, "act_embed")


def capacity_ffn(
    x_GSD: jax.Array, experts_GSK: jax.Array, gates_GSK: jax.Array, w: Weights, cap: int, impl: str
) -> tuple[jax.Array, jax.Array]:
    """Capacity dispatch, expert SwiGLUs, weighted combine: (y_GSD, kept_GSK). impl: einsum | gather."""
    G, S, D = x_GSD.shape
    E, dt = w[0].shape[0], x_GSD.dtype
    if impl == "einsum":
        dispatch_GSEC, combine_GSEC, kept_GSK = capacity_dispatch(experts_GSK, gates_GSK, E, cap)
        x_EGCD = jnp.einsum("gsec,gsd->egcd", dispatch_GSEC.astype(dt), x_GSD)
        y_EGCD = _experts(x_EGCD, w)
        return jnp.einsum("gsec,egcd->gsd", combine_GSEC.astype(dt), y_EGCD), kept_GSK
    position_GSK, kept_GSK = capacity_slots(experts_GSK, E, cap)
    # Slot id e * C + position; a dropped assignment points one past the end (reads as zeros).
    slot_GSK = jnp.where(kept_GSK, experts_GSK * cap + position_GSK, E * cap)
    token_GSK = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32)[None, :, None], slot_GSK.shape)
    source_GX = jnp.full((G, E * cap + 1), S, jnp.int32)  # token filling each slot; S = empty
    source_GX = source_GX.at[jnp.arange(G)[:, None], slot_GSK.reshape(G, S * slot_GSK.shape[-1])].set(
        token_GSK.reshape(G, -1)
    )[:, : E * cap]
    x_GXD = jnp.take_along_axis(x_GSD, source_GX[..., None], axis=1, mode="fill", fill_value=0)
    y_EGCD = _experts(x_GXD.reshape(G, E, cap, D).transpose(1, 0, 2, 3), w)
    y_GXD = y_EGCD.transpose(1, 0, 2, 3).reshape(G, E * cap, D)
    y_GSKD = jnp.take_along_axis(
        y_GXD, slot_GSK.reshape(G, -1)[..., None], axis=1, mode="fill", fill_value=0
    ).reshape(G, S, -1, D)
    return jnp.einsum("gskd,gsk->gsd", y_GSKD, gates_GSK.astype(dt)), kept_GSK


def sort_by_expert(experts_TK: jax.Array, num_experts: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Expert-sorted order without a sort: (row of each assignment in the sorted buffer pos_A,
    rows per expert count_E, first row of each expert start_E). Within an expert, token order."""
    expert_A = experts_TK.reshape(-1)
    onehot_AE = jax.nn.one_hot(expert_A, num_experts, dtype=jnp.int32)
    rank_A = jnp.sum((jnp.cumsum(onehot_AE, axis=0) - 1) * onehot_AE, axis=-1)
    count_E = jnp.sum(onehot_AE, axis=0)
    start_E = jnp.cumsum(count_E) - count_E
    return start_E[expert_A] + rank_A, count_E, start_E


def _to_sorted(x_TD: jax.Array, pos_A: jax.Array, K: int, rows: int) -> jax.Array:
    """x_PD: row pos_A[a] holds token a // K; rows past the A assignments are zeros."""
    T = x_TD.shape[0]
    token_P = (
        jnp.full((rows,), T, jnp.int32)
        .at[pos_A]
        .set(jnp.arange(pos_A.shape[0], dtype=jnp.int32) // K, unique_indices=True)
    )
    return jnp.take(x_TD, token_P, axis=0, mode="fill", fill_value=0)


def _combine(y_PD: jax.Array, pos_A: jax.Array, gates_TK: jax.Array) -> jax.Array:
    T, K = gates_TK.shape
    y_TKD = jnp.take(y_PD, pos_A, axis=0).reshape(T, K, -1)
    return jnp.einsum("tkd,tk->td", y_TKD, gates_TK.astype(y_PD.dtype))


def ragged_local(x_TD: jax.Array, experts_TK: jax.Array, gates_TK: jax.Array, w: Weights) -> jax.Array:
    """Dropless: expert-sorted rows through `jax.lax.ragged_dot` (one data shard's tokens)."""
    T, K = experts_TK.shape
    pos_A, count_E, _ = sort_by_expert(experts_TK, w[0].shape[0])
    x_AD = _to_sorted(x_TD, pos_A, K, T * K)
    gate_AF = jax.lax.ragged_dot(x_AD, w[0], count_E)
    up_AF = jax.lax.ragged_dot(x_AD, w[1], count_E)
    y_AD = jax.lax.ragged_dot(jax.nn.silu(gate_AF) * up_AF, w[2], count_E)
    return _combine(y_AD, pos_A, gates_TK)


def blocked_local(
    x_TD: jax.Array, experts_TK: jax.Array, gates_TK: jax.Array, w: Weights, block: int
) -> jax.Array:
    """Dropless: expert-sorted rows through `blocked_ffn` (one data shard's tokens)."""
    T, K = experts_TK.shape
    pos_A, count_E, start_E = sort_by_expert(experts_TK, w[0].shape[0])
    # `block` rows of slack after the A assignments: an expert's last block never reads out of range.
    x_PD = _to_sorted(x_TD, pos_A, K, T * K + block)
    return _combine(blocked_ffn(x_PD, start_E, count_E, *w, block=block), pos_A, gates_TK)


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
