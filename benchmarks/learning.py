"""Learning per token: held-out loss of mixlab and of a nanodo-style reference trained on the same tokens.

  python benchmarks/learning.py                 # quickstart budget: 300 steps x 16 x 256 tokens, micro MoE
  python benchmarks/learning.py --arg experts=0 # mixlab's dense baseline instead of the 8-expert MoE
  python benchmarks/learning.py --smoke         # nano size, 2 steps: only checks that it runs (seconds)

`--arg` is the argument of `configs/quickstart.py` (`size=small,experts=0`, ...). Both models get the same
batches in the same order (one stream, fed to each in turn), the same number of steps and mixlab's
optimizer from `config.train` (AdamW, linear warmup + cosine decay, clipping, decay on matrices).

The reference is a dense pre-LN GPT written here with nanodo's (and GPT-2's) recipe: token and learned
position embeddings ~ N(0, 1/D), readout tied to the token embedding with no scale, xavier-uniform kernels
(no depth scaling), bias-free LayerNorms, a GELU MLP of width 3/2 * mixlab's dense d_ff (the parameters
per token of mixlab's SwiGLU of that width), full softmax attention. Same D, layers, heads, vocabulary.

Held-out loss: nats per token over `--eval_batches` fixed eval batches of every domain the mixture reads
(the same batches for both), at 0, 10%, ..., 100% of the token budget. Train loss at step s: the mean of
the losses of steps max(1, s - 9)..s (one batch is noisy), reported at step 1, 50, 100 and every 10%.

Measured 2026-12-03 on 2 shared CPU cores (5m43s; `--arg experts=0` 4m41s), held-out loss at 0 / 10% /
50% / 100% of the 1,228,800 tokens: mixlab MoE 5.64 / 2.90 / 1.79 / 1.39, mixlab dense 5.75 / 2.76 / 1.73 /
1.36, reference 6.04 / 3.07 / 2.47 / 2.33 (ln 259 = 5.56). The reference flattens after ~20% of the budget
(it is causal and uses its context: checked); which of its differences costs it most (learned positions,
GELU, no depth-scaled output init) was not measured one by one.

The last line printed is one JSON object with these keys (stable; `arm` is "mixlab" or "reference"):
  vocab_size, ln_vocab          the vocabulary and ln(vocab), a uniform prediction's loss
  steps, tokens_per_step, total_tokens
  init_loss                     {arm: held-out loss before the first step}
  heldout_loss_at_tokens        {arm: {str(tokens seen): held-out loss}}
  train_loss_at_steps           {arm: {str(step): windowed train loss}}
  final                         {arm: held-out loss at the end of the budget}
  mixlab_minus_reference_final  final["mixlab"] - final["reference"] (< 0: mixlab is ahead)
  params                        {arm: parameters used per token (mixlab: active, embeddings once)}
  seconds                       wall seconds of the whole loop, both arms and evaluations
  config                        the arguments
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from configs import quickstart
from mixlab import data, losses, optim, sharding, train

Batch = dict[str, Any]


@dataclasses.dataclass
class Arm:
    """One model under training: its state and jitted (state, batch) -> (state, loss) and
    (state, batch) -> (summed nll, tokens)."""

    state: Any
    step: Callable[[Any, Batch], tuple[Any, jax.Array]]
    nll: Callable[[Any, Batch], tuple[jax.Array, jax.Array]]
    params: int


def masked_nll(logits_BLV: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
    nll_BL = losses.token_nll(logits_BLV, batch["targets"])
    return jnp.sum(nll_BL * batch["loss_mask"]), jnp.sum(batch["loss_mask"])


# --- mixlab: the real trainer's state and step --------------------------------------------------------


def mixlab_arm(config: ml_collections.ConfigDict, setup: train.Setup, mesh, tx) -> Arm:
    graphdef, _, shardings, init = train.init_state(setup, tx, mesh, config.seed)
    batch_sharding = sharding.named(mesh, "act_batch", None)
    step = jax.jit(
        train.make_train_step(graphdef, tx, config.train, setup, seed=config.seed),
        in_shardings=(shardings, batch_sharding),
        out_shardings=(shardings, None),
        donate_argnums=0,
    )

    def nll(state, batch):
        logits_BLV, _ = nnx.merge(graphdef, state["params"])(batch["inputs"])
        return masked_nll(logits_BLV, batch)

    def train_step(state, batch):
        state, metrics = step(state, batch)
        return state, metrics["train/loss"]

    with sharding.use_mesh(mesh):
        state = init()
    return Arm(state, train_step, jax.jit(nll), setup.model.param_counts()["active"])


# --- reference: a nanodo-style dense GPT --------------------------------------------------------------


def reference_init(key: jax.Array, *, V: int, D: int, N: int, F: int, L: int) -> dict:
    """Parameters of the reference; attention kernels as [D, D] so that xavier sees fan-in = fan-out = D
    (as a DenseGeneral's flattened kernel does)."""
    xavier = jax.nn.initializers.glorot_uniform()
    embed = jax.nn.initializers.normal(stddev=D**-0.5)  # variance_scaling(1, fan_in=D): std 1/sqrt(D)
    keys = iter(jax.random.split(key, 2 + 6 * N))
    blocks = []
    for _ in range(N):
        blk = {name: xavier(next(keys), (D, D)) for name in ("wq_DD", "wk_DD", "wv_DD", "wo_DD")}
        blk |= {"w_in_DF": xavier(next(keys), (D, F)), "w_out_FD": xavier(next(keys), (F, D))}
        blk |= {"ln_attn_D": jnp.ones((D,)), "ln_mlp_D": jnp.ones((D,))}
        blocks.append(blk)
    return {
        "embed_VD": embed(next(keys), (V, D)),
        "pos_LD": embed(next(keys), (L, D)),
        "blocks": blocks,
        "ln_out_D": jnp.ones((D,)),
    }


def layer_norm(x_BLD: jax.Array, scale_D: jax.Array, eps: float = 1e-6) -> jax.Array:
    x_BLD = x_BLD - jnp.mean(x_BLD, axis=-1, keepdims=True)
    return x_BLD * jax.lax.rsqrt(jnp.mean(x_BLD * x_BLD, axis=-1, keepdims=True) + eps) * scale_D


def reference_logits(p: dict, tokens_BL: jax.Array, num_heads: int) -> jax.Array:
    B, L = tokens_BL.shape
    D = p["embed_VD"].shape[1]
    N, H = num_heads, D // num_heads
    x_BLD = p["embed_VD"][tokens_BL] + p["pos_LD"][None, :L]
    causal_LL = jnp.tril(jnp.ones((L, L), bool))
    for blk in p["blocks"]:
        h_BLD = layer_norm(x_BLD, blk["ln_attn_D"])
        q_BLNH, k_BLNH, v_BLNH = (
            jnp.einsum("bld,de->ble", h_BLD, blk[w]).reshape(B, L, N, H) for w in ("wq_DD", "wk_DD", "wv_DD")
        )
        s_BNLL = jnp.einsum("blnh,bmnh->bnlm", q_BLNH * H**-0.5, k_BLNH)
        a_BNLL = jax.nn.softmax(jnp.where(causal_LL, s_BNLL, -1e30), axis=-1)
        o_BLD = jnp.einsum("bnlm,bmnh->blnh", a_BNLL, v_BLNH).reshape(B, L, D)
        x_BLD = x_BLD + o_BLD @ blk["wo_DD"]
        h_BLD = layer_norm(x_BLD, blk["ln_mlp_D"])
        x_BLD = x_BLD + jax.nn.gelu(h_BLD @ blk["w_in_DF"]) @ blk["w_out_FD"]
    return jnp.einsum("bld,vd->blv", layer_norm(x_BLD, p["ln_out_D"]), p["embed_VD"])


def reference_arm(config: ml_collections.ConfigDict, setup: train.Setup, tx) -> Arm:
    m = setup.model
    F = 3 * m.dense_d_ff // 2  # GELU's 2 matrices of D x 1.5F = SwiGLU's 3 of D x F
    params = reference_init(
        jax.random.key(config.seed), V=m.vocab_size, D=m.d_model, N=m.num_layers, F=F, L=setup.seq_len
    )

    def loss_fn(params, batch):
        total, count = masked_nll(reference_logits(params, batch["inputs"], m.num_heads), batch)
        return total / jnp.maximum(count, 1.0)

    @jax.jit
    def step(state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}, loss

    def nll(state, batch):
        return masked_nll(reference_logits(state["params"], batch["inputs"], m.num_heads), batch)

    # Parameters per token: the position table adds no FLOPs and is left out, as mixlab's RoPE has none.
    n = sum(x.size for x in jax.tree.leaves(params)) - params["pos_LD"].size
    return Arm({"params": params, "opt_state": tx.init(params)}, step, jax.jit(nll), int(n))


# --- the loop -----------------------------------------------------------------------------------------


def heldout(arm: Arm, batches: list[Batch]) -> float:
    sums = [arm.nll(arm.state, b) for b in batches]
    total, count = (math.fsum(float(x[i]) for x in sums) for i in (0, 1))
    return total / count


def window_means(losses_by_step: list[float], steps: list[int]) -> dict[str, float]:
    return {str(s): float(np.mean(losses_by_step[max(0, s - 10) : s])) for s in steps}


def run(config: ml_collections.ConfigDict, *, evals: int, eval_batches: int) -> dict[str, Any]:
    config.mesh = {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}  # the reference runs on one device
    setup = train.resolve(config)
    total, tps = setup.total_steps, setup.tokens_per_step
    mesh = sharding.make_mesh(dict(config.mesh))
    tx = optim.make_optimizer(config.train, total, setup.warmup_steps)
    arms = {"mixlab": mixlab_arm(config, setup, mesh, tx), "reference": reference_arm(config, setup, tx)}
    eval_set = [
        b
        for name in setup.mixture.active
        for b in data.eval_batches(
            config.data, name, batch_size=config.eval.batch_size, num_batches=eval_batches
        )
    ]
    eval_steps = sorted({round(total * i / evals) for i in range(evals + 1)})
    loss_steps = sorted({1, *(s for s in (50, 100) if s <= total), *(s for s in eval_steps if s > 0)})
    stream = iter(data.make_train_dataset(config.data, batch_size=setup.batch_size, seed=config.seed))
    curves: dict[str, dict[str, float]] = {name: {} for name in arms}
    train_losses: dict[str, list] = {name: [] for name in arms}
    start = time.perf_counter()
    with sharding.use_mesh(mesh):
        for step in range(total + 1):
            if step in eval_steps:
                for name, arm in arms.items():
                    curves[name][str(step * tps)] = heldout(arm, eval_set)
                print(
                    f"tokens {step * tps:>9,}  held-out loss  "
                    + "  ".join(f"{n} {c[str(step * tps)]:.3f}" for n, c in curves.items()),
                    flush=True,
                )
            if step == total:
                break
            batch = next(stream)
            for name, arm in arms.items():
                arm.state, loss = arm.step(arm.state, batch)
                train_losses[name].append(loss)  # fetched at the end: the host does not wait per step
    seconds = time.perf_counter() - start
    train_at = {n: window_means([float(x) for x in ls], loss_steps) for n, ls in train_losses.items()}
    final = {name: c[str(total * tps)] for name, c in curves.items()}
    return {
        "vocab_size": setup.model.vocab_size,
        "ln_vocab": math.log(setup.model.vocab_size),
        "steps": total,
        "tokens_per_step": tps,
        "total_tokens": total * tps,
        "init_loss": {name: c["0"] for name, c in curves.items()},
        "heldout_loss_at_tokens": curves,
        "train_loss_at_steps": train_at,
        "final": final,
        "mixlab_minus_reference_final": final["mixlab"] - final["reference"],
        "params": {name: arm.params for name, arm in arms.items()},
        "seconds": seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arg", default="", help="configs/quickstart.py argument, e.g. experts=0 or size=small")
    p.add_argument("--steps", type=int, default=0, help="> 0: override train.steps (the budget)")
    p.add_argument("--evals", type=int, default=10, help="held-out evaluations after the one at 0 tokens")
    p.add_argument("--eval_batches", type=int, default=2, help="eval batches per domain")
    p.add_argument("--smoke", action="store_true", help="nano size, 2 steps, 1 eval batch: seconds")
    args = p.parse_args()
    arg = ",".join(filter(None, [args.arg, "runlocal" if args.smoke else ""]))
    config = quickstart.get_config(arg or None)
    if args.smoke:
        args.steps, args.evals, args.eval_batches = args.steps or 2, 1, 1
    if args.steps:
        config.train.steps = args.steps
    result = run(config, evals=args.evals, eval_batches=args.eval_batches)
    result["config"] = vars(args)
    print(
        f"ln(vocab) {result['ln_vocab']:.3f}; final held-out loss mixlab {result['final']['mixlab']:.3f}, "
        f"reference {result['final']['reference']:.3f} after {result['total_tokens']:,} tokens "
        f"({result['seconds']:.0f} s)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
