"""KV-cache decoding: the cache, and why generation routes MoE layers dropless.

`Transformer.prefill` runs the prompts once and fills the cache; `Transformer.decode_step` then feeds
one token per row. Letters as in `config.py`, plus S cache length (prompt + new tokens).

Ragged prompts are right-padded: row b's prompt fills positions 0..len_b - 1, so a token's RoPE
position is its cache index, as in an unpadded forward, and row b writes its next token at index
`lengths_B[b]`. Causal attention keeps the padding out of a row's prompt positions during prefill; a
decode step masks cache entries past the row's own position, and the padding's stale keys there are
overwritten as the row grows. (Left-padding would need per-row position offsets in RoPE and a mask of
the pad prefix in every step; right-padding needs neither.)

MoE layers route every prompt and generated token dropless (`MoE.__call__(..., dropless=True)`), with
eval routing (no jitter, no warmup); a decode step's one token per row takes `dispatch.experts_ffn`'s
decode kernel (`decode_ffn`). Capacity dispatch drops depend on which tokens share a group (a padded
row of the [B, P + N] buffer, or `moe_group_size` tokens, in a full recompute; the prompt in a
prefill; one token in a decode step), so under it a full recompute and cached decoding would differ,
and both would depend on the padding. Dropless routing makes generation a function of each row's
prefix alone, equal to capacity dispatch whenever capacity covers every token
(`moe_test.test_dropless_equals_capacity_when_capacity_covers_all_tokens`,
`decode_test.test_capacity_models_generate_dropless`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax


class KVCache(NamedTuple):
    """Rotated keys and values of every attention layer, in the compute dtype, and each row's count
    of valid entries (the next write index). A pytree: it goes through `jit` and loop carries."""

    k: tuple[jax.Array, ...]  # per layer [B, M, S, H]
    v: tuple[jax.Array, ...]  # per layer [B, M, S, H]
    lengths_B: jax.Array  # int32
