"""Answer-level likelihood metrics: how strongly a model prefers the gold answer, with no generation.

At small scales exact-match accuracy sits near 0 and says little; these are the primaries instead (as
OLMo's `*_gold_bpb` and DataDecide). Each item is a (context, continuation) pair scored by one
teacher-forced pass; names are `<metric>/<suite>`:

  answer_bpb    bits per byte of ` {answer}\\n` after the task's prompt (`Question: {q}\\nAnswer:` or a
                program then `# Output:`): math, math_extrap, output_pred
  solution_bpb  of the worked solution and answer `Solution:\\n1. ...\\nAnswer: {a}\\n` after
                `Question: {q}\\n` (the `trace` document's tail, fair to the scaffold arm): math,
                math_extrap; of the reference body after the signature and docstring: code_gen, humaneval
  choice_prob   softmax over 4 choices' total log-likelihoods (` {choice}\\n` after the answer prompt),
                read at the gold; chance 1/4 (distractors: `choices.py`): math, math_extrap, output_pred

bpb = -sum log p(continuation tokens | context) / (ln 2 * UTF-8 bytes of the continuation). Contexts and
continuations are the training documents' exact text (`mathgen.render`), item ids the task ids of the
generation suites (`math/<family>/<seed>/<difficulty>`, `output_pred/...`, `code_gen/...`, HumanEval's
task_id), so items align across runs and with the task evals; `eval.answers_per_cell` takes the first N
math problems per (family, difficulty) as `math_tasks.load(per_cell=N)` does.

Scoring: context and continuation are tokenized separately and joined after an eos, the separator the
packed training stream puts before every document. A sequence longer than the training length is scored
in strided windows of seq_len inputs, each scoring the tokens past the previous window's, so every
continuation token sees at least seq_len / 2 tokens of context (or its whole prefix). Windows are
right-padded into buckets of a multiple of 64 tokens, about `TOKENS_PER_CALL` per jitted call: a few
compiled shapes, cached across checkpoints of a process. MoE layers route with eval routing, dropless (as
generation does): under capacity dispatch a pad token's first choice takes a slot before any real token's
second choice, so scores would depend on the padding.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mixlab import losses, sharding
from mixlab.data.builtin import mathgen
from mixlab.evals import choices, code_tasks, humaneval, math_tasks
from mixlab.evals.generate import bucket
from mixlab.metric_writer import logger

SUITES = ("math", "math_extrap", "output_pred", "code_gen", "humaneval")
METRICS = {  # suite -> its metrics
    "math": ("answer_bpb", "solution_bpb", "choice_prob"),
    "math_extrap": ("answer_bpb", "solution_bpb", "choice_prob"),
    "output_pred": ("answer_bpb", "choice_prob"),
    "code_gen": ("solution_bpb",),
    "humaneval": ("solution_bpb",),
}
# Window tokens per jitted forward (rows = this / bucket width). On 2 CPU cores (cpu-scale micro MoE) 2,048
# scored the per_cell=10 items in 23-31 s against 42-61 s at 8,192 (the same run, under load): the
# activations and [B, L, V] logits of a call stay in cache.
TOKENS_PER_CALL = 2048


@dataclasses.dataclass(frozen=True)
class Item:
    """One scored item: `continuations` is the continuation (`*_bpb`) or the choices, gold first."""

    metric: str
    id: str
    context: str
    continuations: tuple[str, ...]


class Scored(NamedTuple):
    nats: float  # -log p(continuation | context)
    tokens: int
    bytes: int


def parse_suites(spec: str | Sequence[str] | None) -> list[str]:
    """`"math,code_gen"` (config `eval.answers`) -> suite names; empty -> []; unknown -> ValueError."""
    names = spec.split(",") if isinstance(spec, str) else list(spec or ())
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if unknown := [n for n in names if n not in SUITES]:
        raise ValueError(f"eval.answers: unknown suite(s) {unknown} (known: {', '.join(SUITES)})")
    return names


def higher_is_better(metric: str) -> bool:
    """choice_prob: higher is better; *_bpb: lower is better."""
    kind = metric.split("/", 1)[0]
    if kind == "choice_prob":
        return True
    if kind in ("answer_bpb", "solution_bpb"):
        return False
    raise ValueError(f"{metric!r} is not a likelihood metric")


def _tail(document: str, context: str) -> str:
    if not document.startswith(context):
        raise ValueError(f"document {document[:60]!r} does not start with its context {context[:60]!r}")
    return document[len(context) :]


@functools.cache
def _math_answers() -> tuple[dict[tuple[str, int], list[str]], list[str]]:
    """Gold answers of the whole eval split: by (family, difficulty), and all in split order."""
    by_cell: dict[tuple[str, int], list[str]] = {}
    for p in mathgen.split_problems("eval"):
        by_cell.setdefault((p.family, p.difficulty), []).append(p.answer)
    return by_cell, [p.answer for p in mathgen.split_problems("eval")]


def _math_items(suite: str, per_cell: int | None) -> list[Item]:
    problems = {(p.family, p.seed, p.difficulty): p for p in mathgen.split_problems("eval")}
    by_cell, every = _math_answers()
    out = []
    for task in math_tasks.load(extrapolation=suite == "math_extrap", per_cell=per_cell):
        _, family, seed, difficulty = task.id.split("/")
        p = problems[(family, int(seed), int(difficulty))]
        answer = _tail(mathgen.render(p, "answer"), task.prompt)  # " {answer}\n", as trained
        question = f"Question: {p.question}\n"
        solution = _tail(mathgen.render(p, "trace"), question)
        others = [choices.like_gold(p.answer, a) for a in by_cell[(p.family, p.difficulty)]]
        near = choices.near_math(p.answer, task.id)
        picked = choices.pick(task.id, p.answer, near, others, every, math_tasks.normalise_answer)
        out += [
            Item(f"answer_bpb/{suite}", task.id, task.prompt, (answer,)),
            Item(f"solution_bpb/{suite}", task.id, question, (solution,)),
            Item(f"choice_prob/{suite}", task.id, task.prompt, tuple(f" {c}\n" for c in picked)),
        ]
    return out


def _output_pred_items() -> list[Item]:
    tasks = code_tasks.output_prediction()  # the suite's own selection (per_cell is for math only)
    every = [t.answer for t in tasks]
    out = []
    for t in tasks:
        cell = [u.answer for u in tasks if (u.family, u.difficulty) == (t.family, t.difficulty)]
        others = [a for a in cell if a != t.answer]
        picked = choices.pick(t.id, t.answer, choices.near_output(t.answer, t.id), others, every, str.strip)
        out += [
            Item("answer_bpb/output_pred", t.id, t.prompt, (f" {t.answer}\n",)),
            Item("choice_prob/output_pred", t.id, t.prompt, tuple(f" {c}\n" for c in picked)),
        ]
    return out


def _solution_items(suite: str, tasks: list) -> list[Item]:
    return [Item(f"solution_bpb/{suite}", t.id, t.prompt, (t.solution,)) for t in tasks]


def items(suites: Sequence[str], per_cell: int | None = None) -> list[Item]:
    """The items of the named suites (`SUITES`); `per_cell` limits the math suites' problems."""
    out: list[Item] = []
    for suite in parse_suites(suites):
        if suite in ("math", "math_extrap"):
            out += _math_items(suite, per_cell)
        elif suite == "output_pred":
            out += _output_pred_items()
        elif suite == "code_gen":
            out += _solution_items(suite, code_tasks.code_generation())
        else:
            out += _solution_items(suite, humaneval.load())
    return out


def windows(length: int, first: int, seq_len: int) -> list[tuple[int, int, int]]:
    """(start, lo, hi) per window scoring tokens first..length-1 of a `length`-token sequence s: inputs
    s[start : hi - 1] (at most seq_len), scored targets s[lo:hi]. Each target t has t - start >=
    min(t, ceil(seq_len / 2)) tokens of context; one window when the sequence fits."""
    half = -(-seq_len // 2)
    out, t = [], first
    while t < length:
        start = max(0, min(t - half, length - 1 - seq_len))  # the last window is filled from the left
        hi = min(length, start + seq_len + 1)
        out.append((start, t, hi))
        t = hi
    return out


@functools.partial(jax.jit, static_argnums=0)  # graphdefs of one config compare equal: reused per step
def _window_nats(graphdef, params, inputs_BL, targets_BL, mask_BL):
    logits_BLV = nnx.merge(graphdef, params)(inputs_BL, dropless=True)[0]
    nll_BL = losses.token_nll(logits_BLV, targets_BL)
    return jnp.sum(nll_BL * mask_BL, axis=1)


def score(
    graphdef,
    params,
    tokenizer,
    mesh,
    pairs: Sequence[tuple[str, str]],
    *,
    seq_len: int,
    tokens_per_call: int = TOKENS_PER_CALL,
) -> list[Scored]:
    """-log p(continuation | eos + context) of every (context, continuation) pair, in windows."""
    rows: list[tuple[int, np.ndarray, int]] = []  # (pair, window tokens, first scored target offset)
    out = []
    for i, (context, continuation) in enumerate(pairs):
        ctx = np.concatenate([[tokenizer.eos_id], tokenizer.encode(context)]).astype(np.int32)
        cont = tokenizer.encode(continuation).astype(np.int32)
        if not len(cont):
            raise ValueError(f"empty continuation after {context[:60]!r}")
        seq = np.concatenate([ctx, cont])
        for start, lo, hi in windows(len(seq), len(ctx), seq_len):
            rows.append((i, seq[start:hi], lo - start - 1))
        out.append([0.0, len(cont), len(continuation.encode("utf-8"))])
    axes = sharding.logical_spec("act_batch")[0]
    shards = math.prod(mesh.shape[a] for a in (axes if isinstance(axes, tuple) else (axes,)))
    by_width: dict[int, list[tuple[int, np.ndarray, int]]] = {}
    for row in rows:
        by_width.setdefault(bucket(len(row[1]) - 1), []).append(row)
    batch_sharding = sharding.named(mesh, "act_batch", None)
    # Each call's result is read before the next is dispatched: with several programs in flight, XLA's
    # CPU collectives over fake devices can starve each other's rendezvous on a loaded machine (seen:
    # "only 7 of 8 threads arrived" after 40 s, then an abort), and the overlap saved little.
    with sharding.use_mesh(mesh):
        for width, group in sorted(by_width.items()):
            per_call = max(1, tokens_per_call // width // shards) * shards
            per_call = min(per_call, -(-len(group) // shards) * shards)  # a small bucket: one short call
            for at in range(0, len(group), per_call):
                chunk = group[at : at + per_call]
                inputs = np.full((per_call, width), tokenizer.pad_id, np.int32)
                targets, mask = np.zeros((per_call, width), np.int32), np.zeros((per_call, width), np.float32)
                for r, (_, seq, lo) in enumerate(chunk):
                    n = len(seq) - 1
                    inputs[r, :n], targets[r, :n], mask[r, lo:n] = seq[:-1], seq[1:], 1.0
                dev = [jax.device_put(a, batch_sharding) for a in (inputs, targets, mask)]
                nats_B = np.asarray(jax.device_get(_window_nats(graphdef, params, *dev)), np.float64)
                for (i, _, _), nats in zip(chunk, nats_B, strict=False):
                    out[i][0] += float(nats)
    return [Scored(*o) for o in out]


def _entry(item: Item, scored: list[Scored]) -> dict[str, Any]:
    if item.metric.startswith("choice_prob/"):
        logliks = np.array([-s.nats for s in scored])
        prob = float(np.exp(logliks[0] - np.logaddexp.reduce(logliks)))
        return {"choices": [c[1:-1] for c in item.continuations], "logliks": logliks.tolist(), "prob": prob}
    (s,) = scored
    return {"nats": s.nats, "bytes": s.bytes, "tokens": s.tokens, "bpb": s.nats / (math.log(2) * s.bytes)}


def evaluate(
    graphdef,
    params,
    tokenizer,
    mesh,
    *,
    suites: Sequence[str] | str,
    seq_len: int,
    per_cell: int | None = None,
) -> dict[str, dict[str, Any]]:
    """The `answers` section of `eval/step_<N>.json`: `{metric: {"items": {id: entry}, "mean", "chance",
    "num_choices"}}`; an entry is `{"nats", "bytes", "tokens", "bpb"}`, or for choice_prob `{"choices"
    (gold first), "logliks", "prob"}`; "mean" is the mean item score (`items_from`)."""
    t0 = time.perf_counter()
    todo = items(suites, per_cell)
    pairs = list(dict.fromkeys((it.context, c) for it in todo for c in it.continuations))  # gold = answer
    scored = dict(zip(pairs, score(graphdef, params, tokenizer, mesh, pairs, seq_len=seq_len), strict=True))
    section: dict[str, dict[str, Any]] = {}
    for it in todo:
        entry = _entry(it, [scored[(it.context, c)] for c in it.continuations])
        choice = it.metric.startswith("choice_prob/")
        m = section.setdefault(
            it.metric,
            {
                "items": {},
                "chance": 1 / choices.NUM_CHOICES if choice else None,
                "num_choices": choices.NUM_CHOICES if choice else None,
            },
        )
        m["items"][it.id] = entry
    for metric, m in section.items():
        field = "prob" if higher_is_better(metric) else "bpb"
        m["mean"] = float(np.mean([e[field] for e in m["items"].values()]))
    logger.info(
        "answer likelihoods: %d items, %d pairs in %.1f s", len(todo), len(pairs), time.perf_counter() - t0
    )
    return section


def items_from(eval_json: dict) -> dict[str, dict[str, float]]:
    """`{metric: {item id: score}}` of an eval file's `answers` section (bpb, or the gold probability)."""
    out = {}
    for metric, m in (eval_json.get("answers") or {}).items():
        field = "prob" if higher_is_better(metric) else "bpb"
        out[metric] = {i: float(e[field]) for i, e in m["items"].items()}
    return out


def summary(path: str) -> list[str]:
    """One line per metric of the eval file at `path` (none without an `answers` section)."""
    with open(path) as f:
        answers = json.load(f).get("answers") or {}
    return [
        f"{metric:>26}: {m['mean']:.4f}  ({len(m['items'])} items"
        + (f", chance {m['chance']:.2f})" if m.get("chance") else ")")
        for metric, m in answers.items()
    ]
