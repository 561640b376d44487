"""KV-cache decoding pieces: the cache itself and the MoE feed-forward generation uses.

`Transformer.prefill` runs the prompts once and fills the cache; `Transformer.decode_step` then feeds
one token per row. Letters as in `config.py`, plus S cache length (prompt + new tokens).

Ragged prompts are right-padded: row b's prompt fills positions 0..len_b - 1, so a token's RoPE
position is its cache index, as in an unpadded forward, and row b writes its next token at index
`lengths_B[b]`. Causal attention keeps the padding out of a row's prompt positions during prefill; a
decode step masks cache entries past the row's own position, and the padding's stale keys there are
overwritten as the row grows. (Left-padding would need per-row position offsets in RoPE and a mask of
the pad prefix in every step; right-padding needs neither.)

MoE layers route every prompt and generated token dropless, with eval routing (no jitter, no
warmup). Capacity dispatch drops depend on which tokens share a group (a padded row of the [B, P + N]
buffer, or `moe_group_size` tokens, in a full recompute; the prompt in a prefill; one token in a
decode step), so under it a full recompute and cached decoding would differ, and both would depend
on the padding. Dropless routing makes generation a function of each row's prefix alone, equal to
capacity dispatch whenever capacity covers every token
(`moe_test.test_dropless_equals_capacity_when_capacity_covers_all_tokens`,
`decode_test.test_capacity_models_generate_dropless`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from mixlab.models import dispatch as dispatch_lib
from mixlab.models import routing
from mixlab.models.moe import MoE, dropless_ffn, resolve_dispatch
from mixlab.sharding import constrain


class KVCache(NamedTuple):
    """Rotated keys and values of every attention layer, in the compute dtype, and each row's count
    of valid entries (the next write index). A pytree: it goes through `jit` and loop carries."""

    k: tuple[jax.Array, ...]  # per layer [B, M, S, H]
    v: tuple[jax.Array, ...]  # per layer [B, M, S, H]
    lengths_B: jax.Array  # int32


def moe_dropless(moe: MoE, x_BLD: jax.Array) -> jax.Array:
    """`moe(x_BLD)[0]` (eval routing) without capacity drops; the module docstring says why.

    A decode step (L = 1) runs each token as its own capacity group: C = 1 slot per expert already
    covers a token's K distinct experts, and the E-slot einsum or gather over B tokens is cheaper than
    sorting. Longer inputs (prefill) take the backend's dropless kernel: the configured one if it is
    dropless, else `auto`'s."""
    cfg, dt = moe.cfg, x_BLD.dtype
    L = x_BLD.shape[1]
    bias_E = moe.router_bias_E[...] if cfg.router_bias_rate > 0 else None
    r = routing.route(x_BLD, moe.w_router_DE[...], cfg, bias_E=bias_E)
    w = tuple(p[...].astype(dt) for p in (moe.w_gate_EDF, moe.w_up_EDF, moe.w_down_EFD))
    if L == 1:
        impl = "einsum" if jax.default_backend() == "tpu" else "gather"
        y_BLD, _ = dispatch_lib.capacity_ffn(x_BLD, r.experts_BLK, r.gates_BLK, w, 1, impl)
    else:
        kernel = resolve_dispatch("auto" if cfg.dispatch == "capacity" else cfg.dispatch)
        y_BLD = dropless_ffn(x_BLD, r.experts_BLK, r.gates_BLK, w, cfg, kernel)
    if moe.shared is not None:
        y_BLD = y_BLD + moe.shared(x_BLD)
    return constrain(y_BLD, "act_batch", "act_len", "act_embed")
