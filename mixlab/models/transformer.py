"""Pre-norm decoder-only transformer whose feed-forward layers are dense or MoE."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mixlab.models import routing
from mixlab.models.config import ModelConfig
from mixlab.models.decode import KVCache
from mixlab.models.layers import Attention, Embed, Mlp, RMSNorm, embed_std
from mixlab.models.moe import MoE
from mixlab.models.ops import logits_f32


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, moe: bool, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg, rngs=rngs)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ffn = MoE(cfg, rngs=rngs) if moe else Mlp(cfg, cfg.dense_d_ff, rngs=rngs)

    def __call__(self, x_BLD: jax.Array, positions_BL: jax.Array, **route_kw) -> tuple[jax.Array, dict]:
        x_BLD = x_BLD + self.attn(self.attn_norm(x_BLD), positions_BL)
        h_BLD = self.ffn_norm(x_BLD)
        if isinstance(self.ffn, MoE):
            y_BLD, aux = self.ffn(h_BLD, **route_kw)
        else:
            y_BLD, aux = self.ffn(h_BLD), {}
        return x_BLD + y_BLD, aux

    def _ffn_generate(self, x_BLD: jax.Array) -> jax.Array:
        h_BLD = self.ffn_norm(x_BLD)
        return x_BLD + (self.ffn(h_BLD, dropless=True)[0] if isinstance(self.ffn, MoE) else self.ffn(h_BLD))

    def prefill(
        self, x_BLD: jax.Array, positions_BL: jax.Array, cache_len: int
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """`__call__` for generation (MoE dropless), also returning the layer's KV cache [B, M, S, H]."""
        a_BLD, k_BMSH, v_BMSH = self.attn.prefill(self.attn_norm(x_BLD), positions_BL, cache_len)
        return self._ffn_generate(x_BLD + a_BLD), k_BMSH, v_BMSH

    def decode(
        self, x_B1D: jax.Array, pos_B: jax.Array, k_BMSH: jax.Array, v_BMSH: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        a_B1D, k_BMSH, v_BMSH = self.attn.decode(self.attn_norm(x_B1D), pos_B, k_BMSH, v_BMSH)
        return self._ffn_generate(x_B1D + a_B1D), k_BMSH, v_BMSH


class Transformer(nnx.Module):
    """`model(tokens_BL, *, step=None, rng=None, train=False, dropless=False) -> (logits_BLV float32, aux)`.

    With the defaults routing is deterministic (no jitter, no warmup): evaluation calls `model(tokens)`,
    or `model(tokens, dropless=True)` to route every assignment whatever `cfg.dispatch` says.
    Training passes `train=True`, the step (routing warmup) and a per-step `rng` (when
    `cfg.needs_rng`). `aux` holds `lb_loss` and `z_loss` (means over MoE layers; 0 for a dense model)
    and `moe`, a dict of per-layer arrays stacked on a leading MoE-layer axis: `load_E`, `drop_frac`,
    `router_entropy`, `experts_BLK`, `gates_BLK`, and `router_bias_E` with aux-loss-free balancing
    (empty for a dense model).

    Generation calls `prefill` once, then `decode_step` per token, with a `KVCache` (`decode.py`).
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = Embed(cfg, rngs=rngs)
        moe_layers = set(cfg.moe_layers)
        self.blocks = nnx.List([Block(cfg, i in moe_layers, rngs=rngs) for i in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        if not cfg.tie_embeddings:
            self.unembed_DV = nnx.Param(
                nnx.initializers.normal(stddev=embed_std(cfg.d_model))(  # as tied: the same start
                    rngs.params(), (cfg.d_model, cfg.vocab_size)
                ),
                out_sharding=("embed", "vocab"),
            )

    def __call__(
        self,
        tokens_BL: jax.Array,
        *,
        step: jax.Array | int | None = None,
        rng: jax.Array | None = None,
        train: bool = False,
        dropless: bool = False,
    ) -> tuple[jax.Array, dict]:
        positions_BL = jnp.broadcast_to(jnp.arange(tokens_BL.shape[1]), tokens_BL.shape)
        x_BLD = self.embed(tokens_BL)
        layer_aux = []
        for i, block in enumerate(self.blocks):
            layer_rng = None if rng is None else jax.random.fold_in(rng, i)
            x_BLD, aux = block(x_BLD, positions_BL, step=step, rng=layer_rng, train=train, dropless=dropless)
            if aux:
                layer_aux.append(aux)
        logits_BLV = self._logits(x_BLD)
        if layer_aux:
            moe = {k: jnp.stack([a[k] for a in layer_aux]) for k in layer_aux[0]}
            out = {"lb_loss": jnp.mean(moe.pop("lb_loss")), "z_loss": jnp.mean(moe.pop("z_loss"))}
        else:
            moe, out = {}, {"lb_loss": jnp.zeros(()), "z_loss": jnp.zeros(())}
        return logits_BLV, {**out, "moe": moe}

    def _logits(self, x_BLD: jax.Array) -> jax.Array:
        x_BLD = self.final_norm(x_BLD)
        if self.cfg.tie_embeddings:
            return self.embed.attend(x_BLD)
        return logits_f32(x_BLD, self.unembed_DV[...].astype(x_BLD.dtype).T)

    def prefill(
        self, tokens_BL: jax.Array, lengths_B: jax.Array, cache_len: int
    ) -> tuple[jax.Array, KVCache]:
        """Runs right-padded prompts (row b's `lengths_B[b]` >= 1 tokens first) and returns the logits
        after each row's last prompt token [B, V] (float32) and a `KVCache` of `cache_len` >= L
        entries per row holding the prompts. Eval routing, MoE dropless (`decode.py` says why)."""
        B, L = tokens_BL.shape
        positions_BL = jnp.broadcast_to(jnp.arange(L), (B, L))
        x_BLD = self.embed(tokens_BL)
        ks, vs = [], []
        for block in self.blocks:
            x_BLD, k_BMSH, v_BMSH = block.prefill(x_BLD, positions_BL, cache_len)
            ks.append(k_BMSH)
            vs.append(v_BMSH)
        lengths_B = lengths_B.astype(jnp.int32)
        # Only the last prompt position's logits are needed: the [B, L, V] unembedding is skipped.
        x_B1D = jnp.take_along_axis(x_BLD, (lengths_B - 1)[:, None, None], axis=1)
        return self._logits(x_B1D)[:, 0], KVCache(tuple(ks), tuple(vs), lengths_B)

    def decode_step(self, tokens_B: jax.Array, cache: KVCache) -> tuple[jax.Array, KVCache]:
        """Feeds one token per row at position `cache.lengths_B` (its write index); returns the next
        logits [B, V] (float32) and the cache with the token's keys and values added."""
        pos_B = cache.lengths_B
        x_B1D = self.embed(tokens_B[:, None])
        ks, vs = [], []
        for block, k_BMSH, v_BMSH in zip(self.blocks, cache.k, cache.v, strict=True):
            x_B1D, k_BMSH, v_BMSH = block.decode(x_B1D, pos_B, k_BMSH, v_BMSH)
            ks.append(k_BMSH)
            vs.append(v_BMSH)
        return self._logits(x_B1D)[:, 0], KVCache(tuple(ks), tuple(vs), pos_B + 1)

    def update_router_bias(self, load_nE: jax.Array) -> None:
        """The aux-loss-free balancing step of every MoE layer, in place, from the step's
        `aux["moe"]["load_E"]` ([n_moe_layers, E]). The train step calls it after the optimizer
        update, outside the gradient; a no-op without `router_bias_rate`."""
        if self.cfg.router_bias_rate <= 0:
            return
        for n, i in enumerate(self.cfg.moe_layers):
            bias = self.blocks[i].ffn.router_bias_E
            bias[...] = routing.bias_update(bias[...], load_nE[n], self.cfg.router_bias_rate)
