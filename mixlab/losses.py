"""Token losses shared by training and evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def token_nll(logits_BLV: jax.Array, targets_BL: jax.Array) -> jax.Array:
    """Per-token negative log-likelihood in nats (float32)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits_BLV.astype(jnp.float32), targets_BL)


def sums_by_domain(
    values_BL: jax.Array, mask_BL: jax.Array, domain_BL: jax.Array, num_domains: int
) -> tuple[jax.Array, jax.Array]:
    """(sum of values, number of tokens) per domain id, counting only tokens with mask 1."""
    onehot_BLd = jax.nn.one_hot(domain_BL, num_domains, dtype=jnp.float32) * mask_BL[..., None]
    return jnp.einsum("bl,bld->d", values_BL, onehot_BLd), jnp.sum(onehot_BLd, axis=(0, 1))


def routing_counts(experts_nBLK: jax.Array, mask_BL, domain_BL, num_domains: int, num_experts: int):
    """Counts n[layer, domain, expert] of routed assignments (n_{l,d}(e) of mixlab/analysis/README.md)."""
    chosen_nBLE = jnp.sum(jax.nn.one_hot(experts_nBLK, num_experts, dtype=jnp.float32), axis=-2)
    onehot_BLd = jax.nn.one_hot(domain_BL, num_domains, dtype=jnp.float32) * mask_BL[..., None]
    return jnp.einsum("nble,bld->nde", chosen_nBLE, onehot_BLd)
