"""Batched text generation from a restored model with a KV cache: greedy or temperature sampling, stop
strings, end of sequence.

A batch of prompts is right-padded into [B, P] and prefilled once (`Transformer.prefill`), which also
picks each row's first token; then jitted chunks of up to `CHUNK` one-token decode steps run inside a
`jax.lax.while_loop` on the device, and the host reads each chunk's tokens and applies end-of-sequence
and stop strings (which need the decoded text) between chunks, token by token, exactly as a per-token
loop would. A row that is done keeps decoding (the batch shape is fixed) until the chunk ends or
every row is done; its extra tokens are discarded. Chunks grow 8, 16, 32, 32, ...: the short answers
of the math suites stop after a few tokens, long code completions pay one host round trip per 32
tokens. Shapes are bucketed to multiples of 64 (prompt width P, cache length S >= longest prompt +
max_new_tokens), so a task suite compiles a handful of programs. MoE layers route dropless
(`models/decode.py` explains why).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mixlab import sharding
from mixlab.evals.scoring import cut_at_stop
from mixlab.models.decode import KVCache

CHUNK = 32  # most decode steps per jitted call
FIRST_CHUNK = 8


def bucket(n: int, multiple: int = 64) -> int:
    """n rounded up to a multiple: the padded shapes that bound how many programs compile."""
    return -(-n // multiple) * multiple


def pick(logits_BV: jax.Array, key: jax.Array, temperature: jax.Array) -> jax.Array:
    """Greedy when temperature == 0, else a sample from softmax(logits / temperature); int32 [B]."""
    greedy_B = jnp.argmax(logits_BV, axis=-1)
    sampled_B = jax.random.categorical(key, logits_BV / jnp.maximum(temperature, 1e-6), axis=-1)
    return jnp.where(temperature > 0, sampled_B, greedy_B).astype(jnp.int32)


def make_prefill(graphdef: nnx.GraphDef) -> Callable:
    """jit of `(params, tokens_BP, lengths_B, key, temperature, cache_len) -> (first tokens_B, cache)`;
    the token of step 0 is drawn with `fold_in(key, 0)`."""

    def prefill(params, tokens_BP, lengths_B, key, temperature, cache_len):
        logits_BV, cache = nnx.merge(graphdef, params).prefill(tokens_BP, lengths_B, cache_len)
        return pick(logits_BV, jax.random.fold_in(key, 0), temperature), cache

    return jax.jit(prefill, static_argnums=5)


def make_decode_chunk(graphdef: nnx.GraphDef, eos_id: int) -> Callable:
    """jit of `(params, cache, tokens_B, done_B, key, temperature, start, n) -> (tokens_BC, count,
    cache, last tokens_B)`: up to n <= CHUNK decode steps after the step `start` that produced
    `tokens_B`, stopping early once every row is done (`done_B`, or it emitted `eos_id`);
    `tokens_BC[:, :count]` are steps start + 1, start + 2, ... (step i samples with `fold_in(key, i)`).
    The cache is donated."""

    def chunk(params, cache: KVCache, tok_B, done_B, key, temperature, start, n):
        model = nnx.merge(graphdef, params)
        B = tok_B.shape[0]

        def cond(carry):
            i, _, _, done_B, _ = carry
            return (i < n) & ~jnp.all(done_B)

        def body(carry):
            i, cache, tok_B, done_B, out_BC = carry
            logits_BV, cache = model.decode_step(tok_B, cache)
            tok_B = pick(logits_BV, jax.random.fold_in(key, start + 1 + i), temperature)
            out_BC = jax.lax.dynamic_update_slice_in_dim(out_BC, tok_B[:, None], i, axis=1)
            return i + 1, cache, tok_B, done_B | (tok_B == eos_id), out_BC

        init = (jnp.int32(0), cache, tok_B, done_B, jnp.zeros((B, CHUNK), jnp.int32))
        count, cache, tok_B, _, out_BC = jax.lax.while_loop(cond, body, init)
        return out_BC, count, cache, tok_B

    return jax.jit(chunk, donate_argnums=1)


class Generator:
    """`Generator(graphdef, params, tokenizer, mesh)` is a `scoring.GenerateFn`."""

    def __init__(
        self, graphdef, params, tokenizer, mesh, *, batch_size: int = 8, max_prompt_tokens: int = 1024
    ):
        self.tokenizer, self.mesh = tokenizer, mesh
        self.batch_size, self.max_prompt_tokens = batch_size, max_prompt_tokens
        self.params = params
        self._prefill = make_prefill(graphdef)
        self._chunk = make_decode_chunk(graphdef, tokenizer.eos_id)

    def __call__(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        stop: list[str],
        temperature: float,
        num_samples: int,
        seed: int,
    ) -> list[list[str]]:
        flat = [p for p in prompts for _ in range(num_samples)]
        out: list[str] = []
        key = jax.random.key(seed)
        for start in range(0, len(flat), self.batch_size):
            key, sub = jax.random.split(key)
            out += self._batch(flat[start : start + self.batch_size], max_new_tokens, stop, temperature, sub)
        return [out[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]

    def _batch(
        self, prompts: Sequence[str], max_new: int, stop: Sequence[str], temperature: float, key
    ) -> list[str]:
        tok = self.tokenizer
        if max_new <= 0:
            return ["" for _ in prompts]
        encoded = [tok.encode(p)[-self.max_prompt_tokens :] for p in prompts]
        rows = self.batch_size  # fixed batch shape: one compilation; unused rows are padding
        longest = max(max(len(e) for e in encoded), 1)
        buf = np.full((rows, bucket(longest)), tok.pad_id, np.int32)
        lengths = np.ones((rows,), np.int32)  # an empty prompt reads as one pad token
        for i, e in enumerate(encoded):
            buf[i, : len(e)] = e
            lengths[i] = max(len(e), 1)
        new: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        temp = jnp.float32(temperature)

        def take(tokens_B: np.ndarray) -> None:  # one step's tokens: the per-token loop's rules
            for i in range(len(prompts)):
                if done[i]:
                    continue
                if tokens_B[i] == tok.eos_id:
                    done[i] = True
                    continue
                new[i].append(int(tokens_B[i]))
                # Stop strings are checked on the tail only: decoding everything each step is O(N^2).
                if stop and any(s in tok.decode(new[i][-64:]) for s in stop):
                    done[i] = True

        with sharding.use_mesh(self.mesh):
            tok_B, cache = self._prefill(self.params, buf, lengths, key, temp, bucket(longest + max_new))
            take(np.asarray(tok_B))
            steps, n = 1, FIRST_CHUNK
            while steps < max_new and not all(done):
                n = min(n, CHUNK, max_new - steps)
                done_B = np.ones((rows,), bool)  # padding rows count as done
                done_B[: len(prompts)] = done
                out_BC, count, cache, tok_B = self._chunk(
                    self.params, cache, tok_B, done_B, key, temp, jnp.int32(steps - 1), jnp.int32(n)
                )
                out_BC, count = np.asarray(out_BC), int(count)
                for j in range(count):
                    take(out_BC[:, j])
                steps, n = steps + count, 2 * n
        return [cut_at_stop(tok.decode(ids), stop) for ids in new]
