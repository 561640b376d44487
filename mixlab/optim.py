"""AdamW with linear warmup and cosine decay; weight decay on matrices only."""

from __future__ import annotations

import jax
import ml_collections
import optax


def make_schedule(train: ml_collections.ConfigDict, total_steps: int, warmup_steps: int):
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=train.lr,
        warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1),
        end_value=train.lr * train.min_lr_ratio,
    )


def make_optimizer(
    train: ml_collections.ConfigDict, total_steps: int, warmup_steps: int
) -> optax.GradientTransformation:
    # Norm scales (1-D) are not decayed: decaying them pulls activations towards zero.
    def decay_mask(params):
        return jax.tree.map(lambda p: p.ndim >= 2, params)

    return optax.chain(
        optax.clip_by_global_norm(train.grad_clip),
        optax.adamw(
            make_schedule(train, total_steps, warmup_steps),
            b1=train.b1,
            b2=train.b2,
            eps=1e-8,
            weight_decay=train.weight_decay,
            mask=decay_mask,
        ),
    )
