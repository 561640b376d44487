"""Generation throughput: KV-cache decoding against full recomputation, in one process.

  python benchmarks/decode.py                      # micro MoE e8k2, float32, batch 8, 256 new tokens
  python benchmarks/decode.py --size small --experts 0            # the dense small model
  python benchmarks/decode.py --dispatch capacity --capacity_factor 1.25   # quickstart's dispatch
  python benchmarks/decode.py --size small --experts 16 --batch 1    # top-k vs all-experts decoding

Three ways to produce `--new_tokens` greedy tokens after right-padded random prompts of
`--prompt_len / 2 .. --prompt_len` tokens:
  full_recompute   the pre-cache `Generator`: a forward over the whole [B, P + N] buffer (bucketed to
                   64) per token, the next token read at each row's last position, one host round trip
                   per token;
  cached_step      prefill once, then one jitted decode step per call (a host round trip per token);
  cached_chunked   what `evals.generate.Generator` runs: prefill, then jitted `while_loop` chunks of
                   8, 16, 32, 32, ... decode steps, one host round trip per chunk.
  chunked_topk, chunked_all_experts
                   (MoE) `cached_chunked` with the decode step's experts forced to each token's top-k,
                   or to all experts gated (`decode_ffn`; `auto` picks one: mixlab/models/dispatch.py).
Every method runs once to compile, then `--repeats` times round-robin (neighbours' load hits all alike);
the median run counts. tokens/s = batch * new_tokens / wall seconds, prefill included, compilation
excluded. `greedy_match` is the share of tokens equal to full recomputation's up to each row's first
difference: 1.0 unless a near-tie flips under float rounding, or capacity dispatch drops tokens in the
full buffer (generation routes dropless: `mixlab/models/decode.py`). `--smoke` (nano, batch 2, 8 new
tokens, one repeat) only checks that it runs. The last line is one JSON object (keys:
benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mixlab import configlib, data, sharding
from mixlab.evals import generate
from mixlab.models import ModelConfig, Transformer


def full_recompute(graphdef, params, tokens_BP, lengths_B, new: int):
    forward = jax.jit(
        lambda p, buf, n: jnp.argmax(nnx.merge(graphdef, p)(buf)[0][jnp.arange(buf.shape[0]), n - 1], -1)
    )

    def run() -> np.ndarray:
        B = tokens_BP.shape[0]
        buf = np.zeros((B, generate.bucket(tokens_BP.shape[1] + new)), np.int32)
        buf[:, : tokens_BP.shape[1]] = tokens_BP
        lengths, out = lengths_B.copy(), []
        for _ in range(new):
            nxt = np.asarray(forward(params, buf, lengths))
            buf[np.arange(B), lengths] = nxt
            lengths += 1
            out.append(nxt)
        return np.stack(out, axis=1)

    return run


def cached(graphdef, params, tokens_BP, lengths_B, new: int, chunked: bool):
    prefill = generate.make_prefill(graphdef)
    chunk = generate.make_decode_chunk(graphdef, eos_id=-1)  # never ends early: all N tokens
    cache_len = generate.bucket(tokens_BP.shape[1] + new)
    key, temp = jax.random.key(0), jnp.float32(0.0)
    done_B = np.zeros(tokens_BP.shape[0], bool)

    def run() -> np.ndarray:
        tok_B, cache = prefill(params, tokens_BP, lengths_B, key, temp, cache_len)
        out, steps, n = [np.asarray(tok_B)[:, None]], 1, generate.FIRST_CHUNK if chunked else 1
        while steps < new:
            n = min(n, generate.CHUNK, new - steps)
            out_BC, count, cache, tok_B = chunk(
                params, cache, tok_B, done_B, key, temp, jnp.int32(steps - 1), jnp.int32(n)
            )
            out.append(np.asarray(out_BC)[:, : int(count)])
            steps += int(count)
            n = n * 2 if chunked else 1
        return np.concatenate(out, axis=1)

    return run


def greedy_match(got_BN: np.ndarray, want_BN: np.ndarray) -> float:
    differ_BN = got_BN != want_BN
    first_B = np.where(differ_BN.any(1), differ_BN.argmax(1), want_BN.shape[1])
    return float(first_B.sum() / want_BN.size)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="micro", choices=list(configlib.SIZES))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt_len", type=int, default=64)
    p.add_argument("--new_tokens", type=int, default=256)
    p.add_argument("--experts", type=int, default=8, help="0: the dense model")
    p.add_argument("--top_k", type=int, default=2)
    p.add_argument("--dispatch", default="auto", help="auto = dropless_blocked on CPU")
    p.add_argument("--capacity_factor", type=float, default=1.25)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="nano, batch 2, prompts of 8, 8 new tokens")
    args = p.parse_args()
    if args.smoke:
        args.size, args.batch, args.prompt_len, args.new_tokens, args.repeats = "nano", 2, 8, 8, 1
    loadavg_start = os.getloadavg()
    moe = dict(num_experts=args.experts, top_k=args.top_k, dispatch=args.dispatch) if args.experts else {}
    size = configlib.model_size(args.size, **moe, capacity_factor=args.capacity_factor)
    cfg = ModelConfig.from_dict(
        {**size.to_dict(), "vocab_size": data.ByteTokenizer.vocab_size, "dtype": args.dtype}
    )
    mesh = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
    rng = np.random.default_rng(0)
    lengths_B = rng.integers(args.prompt_len // 2, args.prompt_len + 1, args.batch).astype(np.int32)
    tokens_BP = rng.integers(3, cfg.vocab_size, (args.batch, args.prompt_len), dtype=np.int32)
    tokens_BP[np.arange(args.prompt_len)[None, :] >= lengths_B[:, None]] = 0  # right padding
    with sharding.use_mesh(mesh):
        graphdef, params = nnx.split(nnx.jit(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))())
        a = (graphdef, params, tokens_BP, lengths_B, args.new_tokens)
        runs = {
            "full_recompute": full_recompute(*a),
            "cached_step": cached(*a, chunked=False),
            "cached_chunked": cached(*a, chunked=True),
        }
        for kernel in ("topk", "all_experts") if cfg.is_moe else ():  # same parameters, other graphdef
            k_cfg = dataclasses.replace(cfg, decode_ffn=kernel)
            k_graphdef = nnx.split(nnx.eval_shape(lambda c=k_cfg: Transformer(c, rngs=nnx.Rngs(0))))[0]
            runs[f"chunked_{kernel}"] = cached(k_graphdef, *a[1:], chunked=True)
        outputs, compile_s, times = {}, {}, {name: [] for name in runs}
        for name, run in runs.items():
            t = time.perf_counter()
            outputs[name] = run()
            compile_s[name] = time.perf_counter() - t  # first run: compilation + one run
        for _ in range(args.repeats):
            for name, run in runs.items():
                t = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t)
    results = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend()}
    base = float(np.median(times["full_recompute"]))
    print(
        f"{'method':>19}  {'tok/s':>9}  {'ms/token':>8}  {'run s':>7}  {'speedup':>7}  {'greedy match':>12}"
    )
    for name in runs:
        run_s = float(np.median(times[name]))
        r = {
            "run_s": run_s,
            "run_s_min": float(min(times[name])),
            "tokens_per_s": args.batch * args.new_tokens / run_s,
            "ms_per_token_step": 1e3 * run_s / args.new_tokens,
            "speedup": base / run_s,
            "first_run_s": compile_s[name],
            "greedy_match": greedy_match(outputs[name], outputs["full_recompute"]),
        }
        results[name] = r
        print(
            f"{name:>19}  {r['tokens_per_s']:9,.0f}  {r['ms_per_token_step']:8.2f}  {run_s:7.2f}  "
            f"{r['speedup']:6.1f}x  {r['greedy_match']:12.3f}",
            flush=True,
        )
    results["cached_chunked_speedup"] = results["cached_chunked"]["speedup"]
    if cfg.is_moe:
        results["topk_over_all_experts_speedup"] = (
            results["chunked_all_experts"]["run_s"] / results["chunked_topk"]["run_s"]
        )
    results["params"] = cfg.param_counts()
    results["loadavg_start"], results["loadavg_end"] = list(loadavg_start), list(os.getloadavg())
    results["config"] = vars(args)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
