"""Moving tokens to their experts and back: the one place that picks how (`experts_ffn`).

capacity          each group of S tokens gives every expert C = ceil(cf * S * K / E) slots; assignments
                  take slots in priority order (all first choices of the group before any second
                  choice, then token order); an assignment that finds its expert full is dropped (its
                  token keeps the residual stream only). Tokens move by one-hot einsums on TPU (GShard)
                  and by index gathers elsewhere: the einsums cost 2 * S * E * C * D FLOPs per group
                  (a third of the experts' at S = 512, D = 512, F = 1024, E = 8), the gathers move
                  C * E * D numbers; on CPU the MoE layer's fwd+bwd took 0.86 s with einsums, 0.62 s
                  with gathers.
dropless_ragged   every assignment reaches its expert: expert-sorted rows through ragged_dot, or
dropless_blocked  through loops of plain matmuls (`dropless.py`).
one token per row (a decode step, always dropless), `decode_ffn`:
  topk            each token through its K experts, their weights gathered per token: moves T * K
                  experts' weights (read, copied, read again);
  all_experts     every token through every expert (capacity dispatch with one slot, which cannot
                  drop: a token's K experts are distinct), gates zero off its top-k: reads each
                  expert's weights once, computes E / K times the FLOPs.
                  `auto` takes `topk` when it moves less, 3 * T * K <= E. On CPU at E = 16, K = 2 and
                  the `small` size (D 512, F 2048) one layer took 3.5 ms with topk vs 6.9 ms with
                  all_experts at T = 1 token, and 38 vs 12 ms at T = 4 (2 cores, 2026-12-04; sorting
                  the few assignments for the dropless kernels took 60-80 ms: their per-expert weight
                  slices are copies).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mixlab.models import dropless as dropless_lib
from mixlab.models import expert_parallel, grouped_gemm
from mixlab.models.config import ModelConfig
from mixlab.models.dropless import Weights
from mixlab.models.ops import swiglu_ffn
from mixlab.sharding import constrain


def resolve_dispatch(dispatch: str, dropless: bool = False) -> str:
    """The kernel a call runs: `auto` -> the fast dropless path of this backend (`grouped_gemm`);
    with `dropless` a `capacity` config runs that path too."""
    if dispatch == "auto" or (dropless and dispatch == "capacity"):
        return grouped_gemm.auto_kernel()
    return dispatch


def resolve_decode(decode_ffn: str, tokens: int, top_k: int, num_experts: int) -> str:
    """`topk` or `all_experts` for a one-token-per-row call of `tokens` rows (module docstring)."""
    if decode_ffn != "auto":
        return decode_ffn
    return "topk" if 3 * tokens * top_k <= num_experts else "all_experts"


def group_tokens(x_BLD: jax.Array, group_size: int) -> jax.Array:
    """[B, L, D] -> [G, S, D] capacity groups of `group_size` tokens (0: one group per sequence)."""
    B, L, D = x_BLD.shape
    S = group_size or L
    if (L % S and S % L) or (B * L) % S:
        raise ValueError(
            f"model.moe_group_size = {group_size}: must divide the sequence length {L} or be a "
            f"multiple of it that divides the batch's {B * L} tokens"
        )
    return x_BLD.reshape(B * L // S, S, D)


def experts_ffn(
    x_BLD: jax.Array,
    experts_BLK: jax.Array,
    gates_BLK: jax.Array,
    w: Weights,
    cfg: ModelConfig,
    *,
    dropless: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """The routed experts' gate-weighted output and which assignments were kept: (y_BLD, kept_BLK).
    `dropless` (generation, dropless evaluation) never drops, whatever `cfg.dispatch` says."""
    B, L, D = x_BLD.shape
    kernel = resolve_dispatch(cfg.dispatch, dropless)
    if kernel == "capacity":
        x_GSD = group_tokens(x_BLD, cfg.moe_group_size)
        G, S, _ = x_GSD.shape
        cap = capacity(S, cfg.num_experts, cfg.top_k, cfg.capacity_factor)
        y_GSD, kept_GSK = capacity_ffn(
            x_GSD, experts_BLK.reshape(G, S, -1), gates_BLK.reshape(G, S, -1), w, cap, _impl()
        )
        return y_GSD.reshape(B, L, D), kept_GSK.reshape(B, L, -1)
    kept_BLK = jnp.ones(experts_BLK.shape, bool)
    if L == 1:
        if resolve_decode(cfg.decode_ffn, B, cfg.top_k, cfg.num_experts) == "topk":
            y_BD = topk_ffn(x_BLD[:, 0], experts_BLK[:, 0], gates_BLK[:, 0], w)
            return y_BD[:, None], kept_BLK
        # Each token its own group: one slot per expert holds its K distinct experts.
        return capacity_ffn(x_BLD, experts_BLK, gates_BLK, w, 1, _impl())[0], kept_BLK
    if cfg.dropless_comm == "all_to_all" and expert_parallel.expert_axis_size() > 1:
        flat = (x_BLD.reshape(B * L, D), experts_BLK.reshape(B * L, -1), gates_BLK.reshape(B * L, -1))
        y_TD = expert_parallel.all_to_all_ffn(*flat, w, kernel)
        return y_TD.reshape(B, L, D), kept_BLK
    return dropless_lib.dropless_ffn(x_BLD, experts_BLK, gates_BLK, w, kernel), kept_BLK


def _impl() -> str:
    return "einsum" if jax.default_backend() == "tpu" else "gather"


def topk_ffn(x_TD: jax.Array, experts_TK: jax.Array, gates_TK: jax.Array, w: Weights) -> jax.Array:
    """Each token through its own K experts only: their weights gathered per token, [T, K, D, F]."""
    w_gate_TKDF, w_up_TKDF, w_down_TKFD = (jnp.take(a, experts_TK, axis=0) for a in w)
    h_TKF = jax.nn.silu(jnp.einsum("td,tkdf->tkf", x_TD, w_gate_TKDF)) * jnp.einsum(
        "td,tkdf->tkf", x_TD, w_up_TKDF
    )
    y_TKD = jnp.einsum("tkf,tkfd->tkd", h_TKF, w_down_TKFD)
    return jnp.einsum("tkd,tk->td", y_TKD, gates_TK.astype(y_TKD.dtype))


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
