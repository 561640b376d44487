"""The frozen model configuration every layer receives (never the global ConfigDict).

Shape letters used in names throughout `mixlab.models`:
  B batch, L sequence length, D model width, N query heads, M key/value heads, H head dim,
  F feed-forward hidden, V vocabulary, E experts, K routed experts per token (top-k),
  G dispatch groups, S tokens per group, C expert capacity per group, T tokens (B*L),
  A routed assignments (T*K), P rows of the padded expert-sorted buffer, X a leading batch of
  independent feed-forwards (experts or one dense MLP).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

# `auto`: `dropless_blocked` on CPU; on GPU/TPU `dropless_ragged` unless ragged_dot lowers to a dense
# dot there (a start-up probe, models/grouped_gemm.py), then `dropless_blocked`.
DISPATCH = ("capacity", "dropless_ragged", "dropless_blocked", "auto")
# A one-token-per-row call (a decode step): `auto` picks by the weights each moves (dispatch.py).
DECODE_FFN = ("auto", "topk", "all_experts")
# How dropless dispatch meets a mesh `expert` axis > 1: tokens to the experts, or the experts' weights
# gathered to the tokens (models/expert_parallel.py).
DROPLESS_COMM = ("all_to_all", "gather_weights")
SCORE_FNS = ("softmax", "sigmoid")
LB_GRANULARITY = ("sequence", "micro_batch", "global_batch")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int  # dense MLP hidden size, and each routed expert's hidden size
    num_kv_heads: int = 0  # 0 -> num_heads (multi-head); fewer -> grouped-query attention
    head_dim: int = 0  # 0 -> d_model // num_heads
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    dtype: str = "float32"  # compute dtype; parameters (and optimizer state) are always float32
    # MoE: num_experts == 0 gives a dense model.
    num_experts: int = 0
    top_k: int = 2
    score_fn: str = "softmax"  # router scores: softmax over experts, or per-expert sigmoid (DeepSeek-V3)
    norm_topk_prob: bool = True  # renormalise the k chosen gates to sum to 1
    num_shared_experts: int = 0  # > 0: a dense SwiGLU every token goes through, beside the routed experts
    shared_d_ff: int = 0  # its hidden size; 0 -> num_shared_experts * d_ff
    first_dense_layers: int = 0  # the first k layers are dense (DeepSeek's first_k_dense_replace)
    moe_every: int = 1  # after those, every n-th layer is MoE, the others dense (GShard: 2)
    dispatch: str = "capacity"
    capacity_factor: float = 1.25  # `capacity` dispatch only: slots per expert = cf * S * K / E
    moe_group_size: int = 0  # `capacity` dispatch group size S in tokens; 0 -> one group per sequence
    dropless_comm: str = "all_to_all"  # dropless dispatch over an `expert` mesh axis
    decode_ffn: str = "auto"  # decode steps' experts: each token's top-k, or all experts gated
    lb_granularity: str = "global_batch"  # token set of f_e, P_e in the load-balancing loss
    router_bias_rate: float = 0.0  # > 0: aux-loss-free balancing bias, updated by this much a step
    router_jitter: float = 0.0  # train only: router input * U(1 - eps, 1 + eps) (Switch)
    routing_warmup_steps: int = 0  # train only: logits = a * learned + (1 - a) * N(0, 1), a = t / t_w

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
        if self.hdim % 2:
            bad("head_dim", f"rotary embeddings need an even head dim, got {self.hdim}")
        if self.dtype not in ("float32", "bfloat16"):
            bad("dtype", "must be float32 or bfloat16")
        if self.num_experts < 0:
            bad("num_experts", "must be >= 0 (0 = dense)")
        if self.num_experts and not 1 <= self.top_k <= self.num_experts:
            bad("top_k", f"must be in [1, num_experts = {self.num_experts}]")
        if self.score_fn not in SCORE_FNS:
            bad("score_fn", f"unknown (known: {', '.join(SCORE_FNS)})")
        if self.dispatch not in DISPATCH:
            bad("dispatch", f"unknown (known: {', '.join(DISPATCH)})")
        if self.dropless_comm not in DROPLESS_COMM:
            bad("dropless_comm", f"unknown (known: {', '.join(DROPLESS_COMM)})")
        if self.decode_ffn not in DECODE_FFN:
            bad("decode_ffn", f"unknown (known: {', '.join(DECODE_FFN)})")
        if self.lb_granularity not in LB_GRANULARITY:
            bad("lb_granularity", f"unknown (known: {', '.join(LB_GRANULARITY)})")
        if self.capacity_factor <= 0:
            bad("capacity_factor", "must be positive")
        for key in ("num_shared_experts", "shared_d_ff", "moe_group_size", "routing_warmup_steps"):
            if getattr(self, key) < 0:
                bad(key, "must be >= 0")
        if self.router_bias_rate < 0:
            bad("router_bias_rate", "must be >= 0 (0 = no aux-loss-free bias)")
        if not 0 <= self.router_jitter < 1:
            bad("router_jitter", "must be in [0, 1)")
        if self.moe_every < 1:
            bad("moe_every", "must be >= 1")
        if not 0 <= self.first_dense_layers <= self.num_layers:
            bad("first_dense_layers", f"must be in [0, num_layers = {self.num_layers}]")
        if self.is_moe and not self.moe_layers:
            bad("first_dense_layers", f"with moe_every = {self.moe_every} leaves no MoE layer")

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
    def moe_layers(self) -> tuple[int, ...]:
        """Indices of the MoE layers: i >= first_dense_layers and (i - first_dense_layers + 1) % moe_every
        == 0, so moe_every = 2 makes layers 1, 3, 5, ... MoE (GShard's every other layer)."""
        if not self.is_moe:
            return ()
        k, n = self.first_dense_layers, self.moe_every
        return tuple(i for i in range(k, self.num_layers) if (i - k + 1) % n == 0)

    @property
    def dense_d_ff(self) -> int:
        """Hidden size of a dense layer: in an MoE model top_k * d_ff, so a dense layer has the routed
        experts' active parameters (configlib.model_size gives experts d_ff // top_k)."""
        return self.top_k * self.d_ff if self.is_moe else self.d_ff

    @property
    def shared_ff(self) -> int:
        return self.shared_d_ff or self.num_shared_experts * self.d_ff

    @property
    def needs_rng(self) -> bool:
        """Whether a training call needs a `rng` (router jitter or stochastic routing warmup)."""
        return self.is_moe and (self.router_jitter > 0 or self.routing_warmup_steps > 0)

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
        """Total and per-token-active parameter counts (embeddings counted once; the aux-loss-free
        router bias is not a parameter)."""
        D, F, E = self.d_model, self.d_ff, self.num_experts
        attn = D * self.hdim * (self.num_heads * 2 + self.kv_heads * 2)
        embed = self.vocab_size * D * (1 if self.tie_embeddings else 2)
        norms = (2 * self.num_layers + 1) * D
        n_moe = len(self.moe_layers)
        dense_ffn = (self.num_layers - n_moe) * 3 * D * self.dense_d_ff
        shared = 3 * D * self.shared_ff + D * E  # shared experts + router
        moe_total = n_moe * (E * 3 * D * F + shared)
        moe_active = n_moe * (self.top_k * 3 * D * F + shared)
        base = norms + self.num_layers * attn + dense_ffn
        return {
            "total": embed + base + moe_total,
            "active": embed + base + moe_active,
            "active_nonembed": base + moe_active,
        }

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, PaLM-style: 6 * (active non-embedding params + output layer) +
        12 * layers * seq_len * attention width (the causal mask's savings are not subtracted, as in
        nanodo and MaxText, so MFU figures are comparable)."""
        n = self.param_counts()["active_nonembed"] + self.vocab_size * self.d_model
        return 6.0 * n + 12.0 * self.num_layers * seq_len * self.num_heads * self.hdim
