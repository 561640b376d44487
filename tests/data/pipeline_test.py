"""Grain pipeline: token-exact shares, provenance, stable ids, common random numbers, schedules, exact
resume, and process sharding (the union of the processes is the single-process stream)."""

import itertools
import json

import grain
import ml_collections
import numpy as np
import pytest

from mixlab.data import (
    DOMAINS,
    ByteTokenizer,
    eval_batches,
    load_documents,
    make_train_dataset,
    packing,
    pipeline,
)
from mixlab.data.interleave import ScheduledMix

SEQ_LEN = 64
ID = {name: i for i, name in enumerate(DOMAINS)}  # ids are registry positions, in every arm


def _cfg(seq_len=SEQ_LEN, **weights):
    weights = weights or {"text": 0.5, "code": 0.3, "math": 0.2}
    return ml_collections.ConfigDict({"weights": weights, "seq_len": seq_len})


def _take(cfg, n_batches, batch_size=10, seed=0, shard_index=0, shard_count=1):
    ds = make_train_dataset(
        cfg, batch_size=batch_size, seed=seed, shard_index=shard_index, shard_count=shard_count
    )
    return list(itertools.islice(ds, n_batches))


def _ids(batches):
    return np.concatenate([b["domain"][:, 0] for b in batches])


def _windows_of(batches, domain):
    """Packed windows (inputs plus the last target) of one domain, in stream order."""
    rows = np.concatenate([np.concatenate([b["inputs"], b["targets"][:, -1:]], 1) for b in batches])
    return rows[_ids(batches) == ID[domain]]


def _domain_windows(domain, seed=0):
    return pipeline.domain_windows(domain, "train", seq_len=SEQ_LEN, seed=seed)


# --- one transform at a time ------------------------------------------------------------------


def test_to_example_shifts_and_masks():
    ex = pipeline.to_example(np.array([5, 6, 7, 2, 0, 0], np.int32), domain_id=2)
    np.testing.assert_array_equal(ex["inputs"], [5, 6, 7, 2, 0])
    np.testing.assert_array_equal(ex["targets"], [6, 7, 2, 0, 0])
    np.testing.assert_array_equal(ex["loss_mask"], [1, 1, 1, 0, 0])  # masked where the target is pad
    np.testing.assert_array_equal(ex["domain"], [2] * 5)


def test_domain_seed_depends_on_name_and_seed_only():
    assert pipeline.domain_seed(0, "code") == pipeline.domain_seed(0, "code")
    assert len({pipeline.domain_seed(s, d) for s in range(3) for d in ("text", "code")}) == 6


# --- the training stream ----------------------------------------------------------------------


def test_batch_format_and_shift():
    batch = _take(_cfg(), 1, batch_size=4)[0]
    assert {k: (v.dtype, v.shape) for k, v in batch.items()} == {
        "inputs": (np.int32, (4, SEQ_LEN)),
        "targets": (np.int32, (4, SEQ_LEN)),
        "domain": (np.int32, (4, SEQ_LEN)),
        "loss_mask": (np.float32, (4, SEQ_LEN)),
    }
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    assert (batch["loss_mask"] == 1.0).all()  # an endless stream never pads
    assert batch["inputs"].min() >= 0 and batch["inputs"].max() < ByteTokenizer.vocab_size


@pytest.mark.parametrize(
    "weights", [{"text": 0.5, "code": 0.3, "math": 0.2}, {"text": 0.07, "code": 0.5, "math": 0.43}]
)
def test_every_1000_window_is_token_exact_and_every_token_tagged(weights):
    batches = _take(_cfg(**weights), 250, batch_size=8)  # 2,000 sequences
    domain = np.concatenate([b["domain"] for b in batches])
    assert (domain == domain[:, :1]).all()  # one domain per sequence: token share = sequence share
    onehot = np.eye(len(DOMAINS))[domain[:, 0]]
    target = np.array([weights.get(n, 0.0) for n in DOMAINS])
    cum = np.concatenate([np.zeros((1, len(DOMAINS))), np.cumsum(onehot - target, axis=0)])
    assert np.abs(cum[1000:] - cum[:-1000]).max() < 5  # < 0.5 pp in every window of 1,000
    for name in weights:  # the tag is right: each sequence is the next window of that domain's stream
        rows = _windows_of(batches, name)
        windows = _domain_windows(name)
        for k in (0, 1, len(rows) // 2, len(rows) - 1):
            np.testing.assert_array_equal(rows[k], windows(k))
        spans = windows.spans(len(rows) - 1)
        documents = load_documents(name, "train")
        assert ByteTokenizer().decode(rows[-1][rows[-1] > 2][:20]) in "".join(
            documents[d] for _, d, _, _ in spans
        )


@pytest.mark.parametrize(
    "arm, read",
    [
        ("", ("text", "code", "math")),
        ("remove:code", ("text", "math")),
        ("remove:text:fill:math", ("code", "math")),
        ("add:code_text:0.2", ("text", "code", "math", "code_text")),
    ],
)
def test_ids_are_the_registry_in_every_arm(arm, read):
    cfg = _cfg()
    cfg.arm = arm
    assert set(np.unique(_ids(_take(cfg, 20))).tolist()) == {ID[n] for n in read}


def test_common_random_numbers_across_arms_and_schedules():
    def code_windows(cfg, n_batches, seed=0):
        return _windows_of(_take(cfg, n_batches, seed=seed), "code")[:40]

    base = code_windows(_cfg(), 20)  # 60 code sequences
    no_text = _cfg()
    no_text.arm = "remove:text:fill:math"  # code keeps its share, text's goes to math
    scaffold = _cfg()
    scaffold.arm = ["replace:math:math_traces", "remove:text"]
    staged = _cfg(text=0.0)
    del staged.weights
    staged.weights = {}
    staged.schedule = [(0, {"text": 1.0}), (4, {"text": 0.9, "code": 0.1}), (10, {"code": 1.0})]
    assert len(base) == 40
    for cfg, n in ((no_text, 20), (scaffold, 20), (_cfg(code=1.0), 4), (staged, 14)):
        np.testing.assert_array_equal(base, code_windows(cfg, n))
    assert not np.array_equal(base, code_windows(_cfg(), 20, seed=1))  # the seed matters


def test_schedule_switches_at_its_step():
    cfg = ml_collections.ConfigDict({"weights": {}, "seq_len": SEQ_LEN})
    cfg.schedule = [(0, {"text": 1.0}), ({"tokens": 3 * 4 * SEQ_LEN}, {"code": 0.5, "math": 0.5})]
    batches = _take(cfg, 6, batch_size=4)  # 4 x 64 tokens a step: stage 2 starts at step 3
    assert [set(np.unique(b["domain"])) for b in batches] == [{ID["text"]}] * 3 + [
        {ID["code"], ID["math"]}
    ] * 3


def _assert_same(want, got):
    assert len(want) == len(got)
    for w, g in zip(want, got, strict=True):
        for key in w:
            np.testing.assert_array_equal(w[key], g[key])


@pytest.mark.parametrize("stop", [1, 3, 5])  # mid-stage, at the boundary, past it
def test_resume_restores_exactly_across_a_schedule_boundary(stop):
    cfg = ml_collections.ConfigDict({"weights": {}, "seq_len": SEQ_LEN, "arm": "remove:math:fill:code"})
    cfg.schedule = [(0, {"text": 0.6, "math": 0.4}), (3, {"text": 0.2, "code": 0.8})]
    ds = make_train_dataset(cfg, batch_size=4, seed=3, shard_index=0, shard_count=1)
    it = iter(ds)
    for _ in range(stop):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # what Orbax stores: plain JSON
    expected = [next(it) for _ in range(4)]
    resumed = iter(ds)
    resumed.set_state(state)
    _assert_same(expected, [next(resumed) for _ in range(4)])


def test_resume_through_orbax(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    cfg = ml_collections.ConfigDict({"weights": {}, "seq_len": SEQ_LEN})
    cfg.schedule = [(0, {"text": 0.5, "code": 0.5}), (6, {"math": 1.0})]
    ds = make_train_dataset(cfg, batch_size=2, seed=0, shard_index=0, shard_count=1)
    it = iter(ds)
    for _ in range(5):
        next(it)
    with ocp.CheckpointManager(tmp_path) as mngr:
        mngr.save(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
        expected = [next(it) for _ in range(3)]  # crosses into the second stage
        restored = mngr.restore(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(iter(ds))))
    _assert_same(expected, [next(restored["data"]) for _ in range(3)])


@pytest.mark.parametrize("shard_count", [2, 3])
def test_the_union_of_the_processes_is_the_single_process_stream(shard_count):
    cfg, steps, rows = _cfg(), 8, 4
    shards = [_take(cfg, steps, rows, shard_index=p, shard_count=shard_count) for p in range(shard_count)]
    single = _take(cfg, steps, rows * shard_count)
    for step, batch in enumerate(single):  # sequence level: the trainer's global batch, row for row
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([s[step][key] for s in shards]), batch[key])
    # Document level: each process's rows of a domain are the windows the layout gives it; those are
    # disjoint across processes and together windows 0..m-1, i.e. token ranges tiling the stream.
    active, stages = ("text", "code", "math"), [(0, dict(cfg.weights))]
    layouts = [
        list(
            itertools.islice(
                ScheduledMix(active, stages, batch_size=rows, shard_index=p, shard_count=shard_count),
                steps * rows,
            )
        )
        for p in range(shard_count)
    ]
    for d, name in enumerate(active):
        windows = _domain_windows(name)
        read = [[k for dd, k in layout if dd == d] for layout in layouts]
        for p, ks in enumerate(read):
            np.testing.assert_array_equal(_windows_of(shards[p], name), [windows(k) for k in ks])
        assert sorted(k for ks in read for k in ks) == list(range(sum(map(len, read))))
        spans = [sp for ks in read for k in ks for sp in windows.spans(k)]
        assert len(set(spans)) == len(spans)  # no document token read twice
    with pytest.raises(ValueError, match="shard_index=2"):
        _take(cfg, 1, shard_index=2, shard_count=2)


def test_a_full_epoch_is_dealt_exactly_once():
    windows = packing.PackedWindows([f"doc {i} " * (i % 9 + 1) for i in range(50)], window=9, seed=4)
    per_epoch = -(-windows.epoch_tokens // 9) + 2  # past the first epoch's end
    pieces = [windows.spans(k) for p in range(3) for k in range(p, per_epoch, 3)]
    epoch0 = sorted((d, a, b) for spans in pieces for e, d, a, b in spans if e == 0)
    by_doc = {}
    for d, a, b in epoch0:
        by_doc.setdefault(d, []).append((a, b))
    assert sorted(by_doc) == list(range(50))
    for d, ranges in by_doc.items():  # each document's tokens exactly once, across all processes
        assert ranges[0][0] == 0 and all(b == a2 for (_, b), (a2, _) in itertools.pairwise(ranges))
        assert ranges[-1][1] == windows.lengths[d]


def test_default_shard_is_the_jax_process():
    default = make_train_dataset(_cfg(), batch_size=2, seed=0)
    np.testing.assert_array_equal(next(iter(default))["inputs"], _take(_cfg(), 1, 2)[0]["inputs"])


# --- eval ---------------------------------------------------------------------------------------


def test_eval_batches_are_deterministic_from_the_eval_split_and_any_domain():
    cfg = _cfg(text=1.0)  # code has weight 0 and is still evaluated, with its registry id
    a = eval_batches(cfg, "code", batch_size=4, num_batches=3)
    b = eval_batches(cfg, "code", batch_size=4, num_batches=3)
    assert len(a) == 3
    _assert_same(a, b)
    assert all((x["domain"] == ID["code"]).all() and x["inputs"].shape == (4, SEQ_LEN) for x in a)
    tokens = _windows_of(a, "code").reshape(-1)
    stream = np.concatenate([packing.tokenize(d) for d in load_documents("code", "eval")])
    np.testing.assert_array_equal(tokens, stream[: len(tokens)])  # corpus order, no shuffle


def test_eval_returns_what_exists():
    batches = eval_batches(_cfg(seq_len=256), "math", batch_size=8, num_batches=10**6)
    tokens = sum(len(d.encode()) + 1 for d in load_documents("math", "eval"))
    assert len(batches) == -(-tokens // 257) // 8  # every window, the last one padded, in full batches
    for b in batches:
        assert (b["targets"][b["loss_mask"] == 0] == 0).all()  # only padding is masked


@pytest.mark.parametrize(
    "domain, kwargs, message",
    [
        ("web", {}, "eval domain: unknown domain 'web' (known: text, code"),
        ("math", {"batch_size": 10**6}, "eval split of domain 'math' has fewer"),
        ("math", {"num_batches": 0}, "num_batches = 0"),
    ],
)
def test_eval_errors(domain, kwargs, message):
    kwargs = {"batch_size": 2, "num_batches": 1} | kwargs
    with pytest.raises(ValueError) as e:
        eval_batches(_cfg(), domain, **kwargs)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "cfg, message",
    [
        (_cfg(text=1.0, foo=1.0), "data.weights: unknown domain 'foo'"),
        (_cfg(text=1.0, code=-1.0), "data.weights['code'] = -1.0 is negative"),
        (_cfg(text=0.0), "data.weights sum to 0"),
        (_cfg(seq_len=0), "data.seq_len = 0"),
        (
            ml_collections.ConfigDict({"weights": {"text": 1.0}, "seq_len": 8, "arm": "remove:text"}),
            "leaves no domain",
        ),
    ],
)
def test_train_errors(cfg, message):
    with pytest.raises(ValueError) as e:
        make_train_dataset(cfg, batch_size=2, seed=0, shard_index=0, shard_count=1)
    assert message in str(e.value)
