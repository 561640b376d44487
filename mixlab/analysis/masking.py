"""Expert-redundancy test (DeepSeekMoE): the loss when every token's top-r routed experts are disabled.

`forward(model, tokens_BL, mask_top=r)` re-runs a restored `Transformer` block by block with its own
modules (embedding, attention, norms, dense MLPs, router, expert weights) and changes only the MoE
layers, without editing `mixlab.models`:

  1. route as the model does at evaluation (`routing.route`, deterministic: no jitter, no warmup);
  2. disable each token's r highest-ranked experts (by the selection scores, i.e. scores + the
     aux-loss-free bias when the model has one) and route it to the next K: ranks r+1 .. r+K, so every
     token still uses K experts, as in DeepSeekMoE's experiment;
  3. gates = the chosen experts' scores, renormalised to sum to 1 when `norm_topk_prob`;
  4. y = sum_k gate_k SwiGLU_{e_k}(x) + shared experts, computed densely over all E experts (no
     capacity: nothing is dropped).

ΔL(r) = mean nll(mask_top = r) - mean nll(mask_top = 0) on the same tokens, both from this dropless
forward; with `dispatch="capacity"` the model's own loss can differ from the r = 0 one by the
assignments the capacity dispatch drops (the report gives both).

Cost: E / K times the routed FFN FLOPs of the model's forward, fine for analysis batches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mixlab.models import Transformer, routing
from mixlab.models.moe import MoE
from mixlab.models.ops import logits_f32, swiglu_ffn


def masked_choice(
    scores_BLE: jax.Array, select_BLE: jax.Array, top_k: int, mask_top: int, norm_topk_prob: bool
) -> tuple[jax.Array, jax.Array]:
    """(experts_BLK, gates_BLK) after disabling the `mask_top` best experts by `select_BLE`."""
    _, ranked_BLR = jax.lax.top_k(select_BLE, mask_top + top_k)
    experts_BLK = ranked_BLR[..., mask_top:]
    gates_BLK = jnp.take_along_axis(scores_BLE, experts_BLK, axis=-1)
    if norm_topk_prob:
        gates_BLK = gates_BLK / jnp.sum(gates_BLK, axis=-1, keepdims=True)
    return experts_BLK.astype(jnp.int32), gates_BLK


def moe_forward(moe: MoE, x_BLD: jax.Array, mask_top: int) -> tuple[jax.Array, jax.Array]:
    """One MoE layer with the top-`mask_top` experts disabled: (y_BLD, experts_BLK used)."""
    cfg, dt = moe.cfg, x_BLD.dtype
    B, L, D = x_BLD.shape
    E = cfg.num_experts
    if mask_top + cfg.top_k > E:
        raise ValueError(f"mask_top = {mask_top}: top-{cfg.top_k} of the remaining {E - mask_top} experts")
    bias_E = moe.router_bias_E[...] if cfg.router_bias_rate > 0 else None
    r = routing.route(x_BLD, moe.w_router_DE[...], cfg, bias_E=bias_E)
    # The scores top-k ran on: softmax probabilities, or per-expert sigmoids (not their normalisation).
    scores_BLE = r.probs_BLE if cfg.score_fn == "softmax" else jax.nn.sigmoid(r.route_logits_BLE)
    select_BLE = scores_BLE if bias_E is None else scores_BLE + bias_E[None, None, :]
    experts_BLK, gates_BLK = masked_choice(scores_BLE, select_BLE, cfg.top_k, mask_top, cfg.norm_topk_prob)
    combine_TE = jnp.einsum(
        "tke,tk->te",
        jax.nn.one_hot(experts_BLK.reshape(B * L, -1), E, dtype=jnp.float32),
        gates_BLK.reshape(B * L, -1).astype(jnp.float32),
    )
    w = tuple(p[...].astype(dt) for p in (moe.w_gate_EDF, moe.w_up_EDF, moe.w_down_EFD))
    x_ETD = jnp.broadcast_to(x_BLD.reshape(1, B * L, D), (E, B * L, D))
    y_ETD = swiglu_ffn(x_ETD, *w)
    y_BLD = jnp.einsum("te,etd->td", combine_TE.astype(dt), y_ETD).reshape(B, L, D)
    if moe.shared is not None:
        y_BLD = y_BLD + moe.shared(x_BLD)
    return y_BLD, experts_BLK


def forward(model: Transformer, tokens_BL: jax.Array, mask_top: int = 0) -> tuple[jax.Array, jax.Array]:
    """The model's forward with each token's top-`mask_top` experts disabled in every MoE layer.

    Returns (logits_BLV float32, experts_nBLK the experts used, stacked over MoE layers). Mirrors
    `Transformer.__call__` at evaluation (tests check that mask_top = 0 equals it with a dropless
    dispatch)."""
    positions_BL = jnp.broadcast_to(jnp.arange(tokens_BL.shape[1]), tokens_BL.shape)
    x_BLD = model.embed(tokens_BL)
    used = []
    for block in model.blocks:
        x_BLD = x_BLD + block.attn(block.attn_norm(x_BLD), positions_BL)
        h_BLD = block.ffn_norm(x_BLD)
        if isinstance(block.ffn, MoE):
            y_BLD, experts_BLK = moe_forward(block.ffn, h_BLD, mask_top)
            used.append(experts_BLK)
        else:
            y_BLD = block.ffn(h_BLD)
        x_BLD = x_BLD + y_BLD
    x_BLD = model.final_norm(x_BLD)
    if model.cfg.tie_embeddings:
        logits_BLV = model.embed.attend(x_BLD)
    else:
        logits_BLV = logits_f32(x_BLD, model.unembed_DV[...].astype(x_BLD.dtype).T)
    return logits_BLV, jnp.stack(used)
