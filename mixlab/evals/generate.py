"""Batched text generation from a restored model: greedy or temperature sampling, stop strings.

Every step recomputes the forward pass over a fixed-size token buffer [B, P + N] (one compilation per
buffer size) and reads each row's logits at its own last position; positions after a row's length are
padding that causal attention never lets earlier positions see. Cost is O(N) full forward passes, fine
for the short answers of the math and output-prediction suites on CPU-sized models.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mixlab import sharding
from mixlab.evals.scoring import cut_at_stop


def _bucket(n: int, multiple: int = 64) -> int:
    return -(-n // multiple) * multiple


class Generator:
    """`Generator(graphdef, params, tokenizer, mesh)` is a `scoring.GenerateFn`."""

    def __init__(
        self, graphdef, params, tokenizer, mesh, *, batch_size: int = 8, max_prompt_tokens: int = 1024
    ):
        self.tokenizer, self.mesh = tokenizer, mesh
        self.batch_size, self.max_prompt_tokens = batch_size, max_prompt_tokens
        self.params = params

        def next_token(params, tokens_BT, lengths_B, key, temperature):
            logits_BTV, _ = nnx.merge(graphdef, params)(tokens_BT)
            last_BV = jnp.take_along_axis(logits_BTV, (lengths_B - 1)[:, None, None], axis=1)[:, 0]
            greedy_B = jnp.argmax(last_BV, axis=-1)
            sampled_B = jax.random.categorical(key, last_BV / jnp.maximum(temperature, 1e-6), axis=-1)
            return jnp.where(temperature > 0, sampled_B, greedy_B).astype(jnp.int32)

        self._next_token = jax.jit(next_token)

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
        self, prompts: Sequence[str], max_new: int, stop: Sequence[str], temperature, key
    ) -> list[str]:
        tok = self.tokenizer
        encoded = [tok.encode(p)[-self.max_prompt_tokens :] for p in prompts]
        rows = self.batch_size  # fixed batch shape: one compilation; unused rows are padding
        width = _bucket(max(len(e) for e in encoded) + max_new)
        buf = np.full((rows, width), tok.pad_id, np.int32)
        lengths = np.ones((rows,), np.int32)
        for i, e in enumerate(encoded):
            buf[i, : len(e)] = e
            lengths[i] = max(len(e), 1)
        new: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        with sharding.use_mesh(self.mesh):
            for step in range(max_new):
                key, sub = jax.random.split(key)
                nxt = np.asarray(self._next_token(self.params, buf, lengths, sub, jnp.float32(temperature)))
                for i in range(len(prompts)):
                    if done[i]:
                        continue
                    if nxt[i] == tok.eos_id:
                        done[i] = True
                        continue
                    new[i].append(int(nxt[i]))
                    buf[i, lengths[i]] = nxt[i]
                    lengths[i] += 1
                    # Stop strings are checked on the tail only: decoding everything each step is O(N^2).
                    if stop and any(s in tok.decode(new[i][-64:]) for s in stop):
                        done[i] = True
                if all(done) or step + 1 == max_new:
                    break
        return [cut_at_stop(tok.decode(ids), stop) for ids in new]
