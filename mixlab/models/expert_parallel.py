"""Expert-parallel dropless dispatch: tokens travel to the shard that holds their expert and back.

With a mesh `expert` axis of X > 1 and `dropless_comm = "all_to_all"` (MaxText's and Megatron's
expert parallelism), each device keeps its E / X experts' weights (gathered over `fsdp`/`tensor`
only) and its own tokens, in a `jax.shard_map` over the whole mesh:
  1. every assignment gets a slot in a send buffer [X, C, D], one block of C rows per destination
     shard, C = T_local * min(K, E / X): a token's K experts are distinct, so it sends at most
     min(K, E / X) rows to one shard and C is the worst case: nothing is ever dropped;
  2. `jax.lax.all_to_all` over `expert` (padded, fixed size: XLA:CPU has no ragged all-to-all) brings
     each shard the rows of its experts from the X shards of its expert group, with their local
     expert ids (E / X marks an empty slot);
  3. the received rows are sorted into E / X + 1 bins (the last is the empty slots, never computed)
     and run through the configured dropless kernel (`dropless.expert_rows`);
  4. a second all_to_all sends the outputs back to their slots; the gates combine them as
     without expert parallelism.
Per step it moves 2 * X * C * D activations per device (and their gradients) instead of gathering
every expert's 3 * D * F weights to every device (`gather_weights`, `dropless.per_data_shard`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from mixlab.models.dropless import (
    Weights,
    blocked_rows,
    combine,
    expert_rows,
    num_batch_shards,
    sort_by_expert,
    to_sorted,
)
from mixlab.sharding import logical_spec

AXIS = "expert"


def expert_axis_size() -> int:
    """Size of the mesh's `expert` axis (1 without a mesh)."""
    mesh = jax.sharding.get_abstract_mesh()
    return 1 if mesh.empty else mesh.shape.get(AXIS, 1)


def all_to_all_ffn(
    x_TD: jax.Array, experts_TK: jax.Array, gates_TK: jax.Array, w: Weights, kernel: str
) -> jax.Array:
    """`dropless.per_data_shard(kernel)` with the experts split over the `expert` axis."""
    mesh = jax.sharding.get_abstract_mesh()
    X, (T, K), E = mesh.shape[AXIS], experts_TK.shape, w[0].shape[0]
    tokens = logical_spec("act_batch", None)
    batch_axes = tokens[0] if isinstance(tokens[0], tuple) else (tokens[0],)
    if AXIS not in batch_axes:
        raise ValueError(
            f"all_to_all dispatch needs the batch split over '{AXIS}' (rule act_batch: {tokens[0]})"
        )
    T_local = T // num_batch_shards()
    block = blocked_rows(T_local * X, K, E)  # the mean load of a local expert, as without EP
    replicas = tuple(a for a in batch_axes if a != AXIS)

    def local(x_TD, experts_TK, gates_TK, w):
        # Each expert's gradient is summed over the data shards of its expert group on the way out.
        w = tuple(jax.lax.pcast(a, replicas, to="varying") for a in w) if replicas else w
        return _local(x_TD, experts_TK, gates_TK, w, X, kernel, block)

    experts = P(AXIS, None, None)
    return jax.shard_map(local, in_specs=(tokens, tokens, tokens, (experts,) * 3), out_specs=tokens)(
        x_TD, experts_TK, gates_TK, w
    )


def send_slots(experts_TK: jax.Array, num_shards: int, local_experts: int) -> tuple[jax.Array, int]:
    """(slot of each assignment in the [X * C] send buffer, C): destination-major, token order within
    a destination; slots shard * C + i for i < that shard's count."""
    T, K = experts_TK.shape
    C = T * min(K, local_experts)
    dest_A = experts_TK.reshape(-1) // local_experts
    pos_A, _, start_X = sort_by_expert(dest_A, num_shards)
    return dest_A * C + pos_A - start_X[dest_A], C


def _local(x_TD, experts_TK, gates_TK, w: Weights, X: int, kernel: str, block: int) -> jax.Array:
    T, K = experts_TK.shape
    E_l = w[0].shape[0]
    slot_A, C = send_slots(experts_TK, X, E_l)
    A = slot_A.shape[0]
    token_S = (
        jnp.full((X * C,), T, jnp.int32)
        .at[slot_A]
        .set(jnp.arange(A, dtype=jnp.int32) // K, unique_indices=True)
    )
    expert_S = (
        jnp.full((X * C,), E_l, jnp.int32)
        .at[slot_A]
        .set((experts_TK.reshape(-1) % E_l).astype(jnp.int32), unique_indices=True)
    )
    send_SD = jnp.take(x_TD, token_S, axis=0, mode="fill", fill_value=0)
    recv_SD = jax.lax.all_to_all(send_SD, AXIS, 0, 0, tiled=True)
    recv_expert_S = jax.lax.all_to_all(expert_S, AXIS, 0, 0, tiled=True)
    # The received rows by local expert; bin E_l (empty slots) sorts last and is never computed.
    pos_S, count_E, start_E = sort_by_expert(recv_expert_S, E_l + 1)
    slack = block if kernel == "dropless_blocked" else 0
    x_PD = to_sorted(recv_SD, pos_S, 1, X * C + slack)
    y_PD = expert_rows(x_PD, count_E[:E_l], start_E[:E_l], w, kernel, block)
    y_SD = jnp.take(y_PD, pos_S, axis=0)
    back_SD = jax.lax.all_to_all(y_SD, AXIS, 0, 0, tiled=True)
    return combine(back_SD, slot_A, gates_TK)
