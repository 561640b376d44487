"""The frozen model configuration every layer receives (never the global ConfigDict).

Shape letters used in names throughout `mixlab.models`:
  B batch, L sequence length, D model width, N query heads, M key/value heads, H head dim,
  F feed-forward hidden, V vocabulary, E experts, K routed experts per token (top-k),
  G dispatch groups, S tokens per group, C expert capacity per group, T tokens (B*L).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

DISPATCH = ("capacity",)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int  # dense MLP hidden size, and each expert's hidden size
    num_kv_heads: int = 0  # 0 -> num_heads (multi-head); fewer -> grouped-query attention
    head_dim: int = 0  # 0 -> d_model // num_heads
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    dtype: str = "float32"  # compute dtype; parameters are always float32
    # MoE: num_experts == 0 gives a dense model.
    num_experts: int = 0
    top_k: int = 2
    capacity_factor: float = 1.25
    dispatch: str = "capacity"
    norm_topk_prob: bool = True  # renormalise the k chosen gates to sum to 1

    def __post_init__(self):
        def bad(key: str, why: str):
            raise ValueError(f"model.{key} = {getattr(self, key)!r}: {why}")

        for key in ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff"):
            if getattr(self, key) <= 0:
                bad(key, "must be positive")
        if self.d_model % self.num_heads and not self.head_dim:
            bad("num_heads", f"does not divide d_model = {self.d_model}; set head_dim")
        if self.num_heads % self.kv_heads:
            bad("num_kv_heads", f"must divide num_heads = {self.num_heads}")
        if self.num_experts < 0:
            bad("num_experts", "must be >= 0 (0 = dense)")
        if self.num_experts and not 1 <= self.top_k <= self.num_experts:
            bad("top_k", f"must be in [1, num_experts = {self.num_experts}]")
        if self.num_experts and self.capacity_factor <= 0:
            bad("capacity_factor", "must be positive")
        if self.dispatch not in DISPATCH:
            bad("dispatch", f"unknown (known: {', '.join(DISPATCH)})")
        if self.dtype not in ("float32", "bfloat16"):
            bad("dtype", "must be float32 or bfloat16")

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def hdim(self) -> int:
        return self.head_dim or self.d_model // self.num_heads

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Builds from a config section; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model: unknown key(s) {unknown} (known: {', '.join(sorted(known))})")
        return cls(**dict(d))

    def param_counts(self) -> dict[str, int]:
        """Total and per-token-active parameter counts (embeddings counted once)."""
        D, F, L = self.d_model, self.d_ff, self.num_layers
        attn = D * self.hdim * (self.num_heads * 2 + self.kv_heads * 2)
        embed = self.vocab_size * D * (1 if self.tie_embeddings else 2)
        norms = (2 * L + 1) * D
        if self.is_moe:
            ffn_total = self.num_experts * 3 * D * F + D * self.num_experts
            ffn_active = self.top_k * 3 * D * F + D * self.num_experts
        else:
            ffn_total = ffn_active = 3 * D * F
        return {
            "total": embed + norms + L * (attn + ffn_total),
            "active": embed + norms + L * (attn + ffn_active),
            "active_nonembed": norms + L * (attn + ffn_active),
        }

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, PaLM-style: 6 * (active non-embedding params + output layer) +
        12 * layers * seq_len * attention width (the causal mask's savings are not subtracted, as in
        nanodo and MaxText, so MFU figures are comparable)."""
        n = self.param_counts()["active_nonembed"] + self.vocab_size * self.d_model
        return 6.0 * n + 12.0 * self.num_layers * seq_len * self.num_heads * self.hdim
