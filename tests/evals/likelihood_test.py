"""Answer-level likelihood metrics equal a hand computation; windows, distractors and item ids hold."""

import dataclasses
import json
import math

import jax
import numpy as np
import pytest
from flax import nnx

from configs import quickstart
from mixlab import sharding, train
from mixlab.data.builtin import mathgen
from mixlab.evals import choices, code_tasks, likelihood, math_tasks, run
from mixlab.models import Transformer
from tests.models import helpers

LONG = 4096  # a training length the test's sequences fit in: one window each


@pytest.fixture(scope="module")
def tiny():
    """A nano MoE with capacity dispatch (seq_len 64), and the graphdef of the same parameters routed
    dropless: the reference forward, since capacity drops would depend on the padding."""
    setup = train.resolve(quickstart.get_config("runlocal"))
    assert setup.model.dispatch == "capacity" and setup.seq_len == 64
    mesh = helpers.one_device_mesh()
    graphdef, params = nnx.split(helpers.init(lambda rngs: Transformer(setup.model, rngs=rngs), mesh))
    dropless = dataclasses.replace(setup.model, dispatch="dropless_blocked")
    with sharding.use_mesh(mesh):
        reference, _ = nnx.split(nnx.eval_shape(lambda: Transformer(dropless, rngs=nnx.Rngs(0))))
    return graphdef, reference, params, setup.tokenizer, mesh


_forward = jax.jit(lambda graphdef, params, x: nnx.merge(graphdef, params)(x)[0], static_argnums=0)


def log_probs(reference, params, mesh, inputs_BL):
    """float64 log-softmax of one plain full forward of the dropless reference."""
    with sharding.use_mesh(mesh):
        logits = np.asarray(_forward(reference, params, inputs_BL), np.float64)
    logits -= logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def sequence(tok, context, continuation):
    return np.concatenate([[tok.eos_id], tok.encode(context), tok.encode(continuation)]).astype(np.int32)


def hand_nats(reference, params, tok, mesh, pairs):
    """-sum log p(continuation) of each (context, continuation), its eos + context + continuation run
    at once, unpadded or right-padded in one batch (causal: padding is never attended)."""
    seqs = [sequence(tok, c, x) for c, x in pairs]
    width = -(-(max(len(s) for s in seqs) - 1) // 256) * 256  # few shapes: each compiles once
    inputs = np.zeros((len(seqs), width), np.int32)
    for i, s in enumerate(seqs):
        inputs[i, : len(s) - 1] = s[:-1]
    logp = log_probs(reference, params, mesh, inputs)
    out = []
    for i, ((c, _), s) in enumerate(zip(pairs, seqs, strict=True)):
        t = np.arange(1 + len(tok.encode(c)), len(s))
        out.append(-logp[i, t - 1, s[t]].sum())
    return np.array(out)


@pytest.mark.slow
def test_metrics_equal_a_hand_computation(tiny):
    graphdef, reference, params, tok, mesh = tiny
    # seq_len 192: every answer fits, a few solutions do (checked here; windows are checked below).
    section = likelihood.evaluate(graphdef, params, tok, mesh, suites="math", seq_len=192, per_cell=1)
    assert set(section) == {"answer_bpb/math", "solution_bpb/math", "choice_prob/math"}
    todo = {(it.metric, it.id): it for it in likelihood.items(["math"], per_cell=1)}
    fits = [
        k for k, it in todo.items() if all(len(sequence(tok, it.context, c)) <= 193 for c in it.continuations)
    ]
    assert sum(metric == "solution_bpb/math" for metric, _ in fits) >= 3
    pairs = [(todo[k].context, c) for k in fits for c in todo[k].continuations]
    nats = iter(hand_nats(reference, params, tok, mesh, pairs))  # one forward for all: one compilation
    for metric, i in fits:
        m, it = section[metric], todo[(metric, i)]
        hand = np.array([next(nats) for _ in it.continuations])
        if metric == "choice_prob/math":
            assert m["chance"] == 0.25 and m["num_choices"] == 4
            entry = m["items"][i]
            np.testing.assert_allclose(entry["logliks"], -hand, rtol=1e-5)
            assert entry["prob"] == pytest.approx(np.exp(-hand[0]) / np.exp(-hand).sum(), rel=1e-3)
            assert entry["prob"] == pytest.approx(
                1 / np.exp(np.array(entry["logliks"]) - entry["logliks"][0]).sum()
            )
            assert entry["choices"][0] == mathgen.generate(*_cell(i)).answer
            # the gold choice is the answer_bpb item: the same context and continuation
            assert entry["logliks"][0] == pytest.approx(-section["answer_bpb/math"]["items"][i]["nats"])
            continue
        assert m["chance"] is None and m["num_choices"] is None
        (continuation,) = it.continuations
        nbytes = len(continuation.encode("utf-8"))
        e = m["items"][i]
        assert e["nats"] == pytest.approx(hand[0], rel=1e-5)
        assert e["bytes"] == nbytes and e["tokens"] == len(tok.encode(continuation))
        assert e["bpb"] == pytest.approx(hand[0] / (math.log(2) * nbytes), rel=1e-5)
    for metric, m in section.items():
        score = "prob" if metric.startswith("choice_prob/") else "bpb"
        assert m["mean"] == pytest.approx(np.mean([e[score] for e in m["items"].values()]))


def _cell(item_id):
    _, family, seed, difficulty = item_id.split("/")
    return family, int(seed), int(difficulty)


def test_windows_cover_every_target_once_with_half_a_window_of_context():
    for length, first, seq_len in [
        (10, 3, 64),
        (65, 1, 64),
        (66, 1, 64),
        (300, 40, 64),
        (301, 290, 64),
        (500, 7, 33),
    ]:
        ws = likelihood.windows(length, first, seq_len)
        assert [lo for _, lo, _ in ws] == [first] + [hi for _, _, hi in ws[:-1]] and ws[-1][2] == length
        for start, lo, hi in ws:
            assert 0 <= start < lo < hi and hi - 1 - start <= seq_len
            assert lo - start >= min(lo, math.ceil(seq_len / 2))  # the first scored target: the least context
        if length - 1 <= seq_len:  # it fits: one window of the whole sequence
            assert ws == [(0, first, length)]


@pytest.mark.slow
def test_sliding_windows_equal_direct_scoring_when_the_sequence_fits(tiny):
    graphdef, reference, params, tok, mesh = tiny
    p = next(p for p in mathgen.split_problems("eval") if p.difficulty == 3 and p.family == "linear")
    question = f"Question: {p.question}\n"
    long_pair = (question, mathgen.render(p, "trace")[len(question) :])  # ~270 bytes
    short_pair = ("Question: What is 2 + 2?\nAnswer:", " 4\n")
    short, long = likelihood.score(graphdef, params, tok, mesh, [short_pair, long_pair], seq_len=64)
    direct = hand_nats(reference, params, tok, mesh, [short_pair, long_pair])
    assert short.nats == pytest.approx(direct[0], rel=1e-5)  # it fits: one window, the direct computation
    assert long.tokens == len(tok.encode(long_pair[1]))

    # Longer than seq_len: windows of 64 tokens, each a plain forward of its own slice, summed.
    seq = sequence(tok, *long_pair)
    ws = likelihood.windows(len(seq), 1 + len(tok.encode(long_pair[0])), 64)
    assert len(ws) >= 6 and all(hi - 1 - start == 64 for start, _, hi in ws)
    logp = log_probs(reference, params, mesh, np.stack([seq[start : hi - 1] for start, _, hi in ws]))
    total = -sum(
        logp[w, t - 1 - start, seq[t]].sum() for w, (start, lo, hi) in enumerate(ws) for t in range(lo, hi)
    )
    assert long.nats == pytest.approx(total, rel=1e-5)
    assert abs(long.nats - direct[1]) > 1e-2  # the windows were used: less context, other nats


def test_distractors_are_deterministic_distinct_and_never_the_gold():
    everything = likelihood.items(["math", "math_extrap", "output_pred"])
    again = likelihood.items(["math", "math_extrap", "output_pred"])
    assert everything == again
    subset = {(it.metric, it.id): it for it in likelihood.items(["math", "math_extrap"], per_cell=2)}
    assert subset and all(everything[everything.index(it)] == it for it in subset.values())
    answers = {it.id: it.continuations[0] for it in everything if it.metric.startswith("answer_bpb/")}
    for it in everything:
        if not it.metric.startswith("choice_prob/"):
            continue
        assert len(it.continuations) == choices.NUM_CHOICES == 4
        assert it.continuations[0] == answers[it.id]  # the gold first, as the answer is scored
        assert all(c.startswith(" ") and c.endswith("\n") for c in it.continuations)
        norm = math_tasks.normalise_answer if it.metric.startswith("choice_prob/math") else str.strip
        keys = [norm(c[1:-1]) for c in it.continuations]
        assert len(set(keys)) == 4, it


def test_pick_fills_a_short_pool_and_refuses_too_few():
    same = lambda s: s
    assert choices.pick("a", "1", [], ["2", "1"], ["3", "4"], same)[0] == "1"
    assert set(choices.pick("a", "1", [], ["2", "1"], ["3", "4"], same)) == {"1", "2", "3", "4"}
    with pytest.raises(ValueError, match="distinct distractors"):
        choices.pick("a", "1", ["1"], ["01"], [], lambda s: str(int(s)))


def test_item_ids_are_the_task_ids_and_texts_the_training_documents():
    for suite, extrap in (("math", False), ("math_extrap", True)):
        tasks = math_tasks.load(extrapolation=extrap, per_cell=3)
        todo = likelihood.items([suite], per_cell=3)
        for metric in likelihood.METRICS[suite]:
            assert [it.id for it in todo if it.metric == f"{metric}/{suite}"] == [t.id for t in tasks]
        for it in todo:
            p = mathgen.generate(*_cell(it.id))
            if it.metric.startswith("answer_bpb/"):
                assert it.context + it.continuations[0] == mathgen.render(p, "answer")
            if it.metric.startswith("solution_bpb/"):
                assert it.context + it.continuations[0] == mathgen.render(p, "trace")
                assert it.continuations[0].startswith("Solution:\n1. ")
    todo = likelihood.items(["output_pred", "code_gen"])
    ids = [t.id for t in code_tasks.output_prediction()]
    assert [it.id for it in todo if it.metric == "answer_bpb/output_pred"] == ids
    assert [it.id for it in todo if it.metric == "choice_prob/output_pred"] == ids
    gen = code_tasks.code_generation()
    assert [(it.id, it.context) for it in todo if it.metric == "solution_bpb/code_gen"] == [
        (t.id, t.prompt) for t in gen
    ]


def test_metric_direction_and_suites():
    assert likelihood.higher_is_better("choice_prob/math")
    assert not likelihood.higher_is_better("answer_bpb/output_pred")
    assert not likelihood.higher_is_better("solution_bpb/humaneval")
    with pytest.raises(ValueError):
        likelihood.higher_is_better("math/arithmetic")
    assert likelihood.parse_suites("") == [] and likelihood.parse_suites(None) == []
    assert likelihood.parse_suites(" math, code_gen,math") == ["math", "code_gen"]
    with pytest.raises(ValueError, match="unknown suite"):
        likelihood.parse_suites("math,chess")


@pytest.mark.slow
def test_evaluate_loss_writes_the_answers_section(tmp_path):
    c = quickstart.get_config("runlocal")
    c.train.steps = 2
    c.mesh = {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}
    c.eval.answers = "math,code_gen"
    c.eval.answers_per_cell = 1
    train.train(c, str(tmp_path / "run"))
    restored = run.restore(str(tmp_path / "run"))  # all 8 fake devices: the batch is sharded 8 ways
    path, results = run.evaluate_loss(restored)
    with open(path) as f:
        written = json.load(f)
    assert written["domains"].keys() == results.keys() and "math" in results
    scores = likelihood.items_from(written)
    ids = [t.id for t in math_tasks.load(per_cell=1)]
    assert set(scores) == {
        "answer_bpb/math",
        "solution_bpb/math",
        "choice_prob/math",
        "solution_bpb/code_gen",
    }
    assert list(scores["choice_prob/math"]) == ids and list(scores["solution_bpb/math"]) == ids
    assert all(0 < p < 1 for p in scores["choice_prob/math"].values())
    assert all(b > 0 for b in scores["answer_bpb/math"].values())
    for metric, m in written["answers"].items():
        assert m["mean"] == pytest.approx(np.mean(list(scores[metric].values())))
    assert len(likelihood.summary(path)) == 4

    del restored.config.eval["answers"]  # a config from before eval.answers: the file as it was
    path, _ = run.evaluate_loss(restored)
    with open(path) as f:
        assert "answers" not in json.load(f)
    assert likelihood.summary(path) == []
