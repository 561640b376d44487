"""The token-exact interleave: quotas, 1,000-window exactness, stage switches, and exact resume."""

import json

import numpy as np
import pytest

from mixlab.data import interleave
from mixlab.data.interleave import DENOMINATOR, ScheduledMix

RNG = np.random.default_rng(0)
WEIGHTS = [
    [0.07, 0.5, 0.43],
    [0.4, 0.3, 0.3],
    [1 / 6] * 6,
    [0.95, 0.01, 0.01, 0.01, 0.01, 0.01],
    [0.001, 0.999],
    [0.2, 0.0, 0.3, 0.0, 0.5, 0.0],
    *[list(RNG.dirichlet(np.full(6, 0.5))) for _ in range(4)],
]


def _deviation(ids, weights, window):
    """Worst |count - window x weight| over every `window` consecutive ids, over all domains."""
    onehot = np.eye(len(weights))[ids]
    cum = np.concatenate([np.zeros((1, len(weights))), np.cumsum(onehot - np.asarray(weights), axis=0)])
    return np.abs(cum[window:] - cum[:-window]).max()


@pytest.mark.parametrize("weights", WEIGHTS, ids=lambda w: "/".join(f"{x:.3f}" for x in w))
def test_every_1000_window_is_within_half_a_point(weights):
    weights = np.asarray(weights) / np.sum(weights)
    ids = interleave.pattern(list(weights), 6000)
    assert _deviation(ids, weights, 1000) < 5  # 0.5 pp of 1,000 sequences (measured <= 1.5)
    prefix = np.cumsum(np.eye(len(weights))[ids], axis=0) - np.outer(np.arange(1, 6001), weights)
    assert np.abs(prefix).max() < 1.5  # every prefix is within ~one sequence of its quota
    assert not set(ids) & {i for i, w in enumerate(weights) if w == 0}


def test_quotas_sum_exactly_and_keep_zeros():
    for weights in WEIGHTS:
        q = interleave.quotas(weights)
        assert sum(q) == DENOMINATOR
        assert all((qi == 0) == (w == 0) for qi, w in zip(q, weights, strict=True))


NAMES = ("a", "b", "c")
STAGES = [(0, {"a": 0.25, "b": 0.75}), (5, {"a": 0.5, "c": 0.5}), (9, {"b": 1.0})]


def _mix(stages=STAGES, batch_size=4, **shard):
    return ScheduledMix(NAMES, stages, batch_size=batch_size, **shard)


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_stages_switch_at_their_step_and_restart_the_pattern():
    got = _take(iter(_mix()), 4 * 12)
    names = [NAMES[d] for d, _ in got]
    assert names[:20] == [["a", "b"][d] for d in interleave.pattern([0.25, 0.75], 20)]
    assert names[20:36] == [["a", "c"][d] for d in interleave.pattern([0.5, 0.5], 16)]
    assert names[36:] == ["b"] * 12
    for d in range(3):  # each domain reads its next window, across stages: never re-read, never skipped
        assert [k for dd, k in got if dd == d] == list(range(sum(dd == d for dd, _ in got)))


@pytest.mark.parametrize("stop", [3, 19, 20, 21, 35, 36, 40])  # mid-stage, at and around boundaries
def test_resume_restores_exactly(stop):
    it = iter(_mix())
    _take(it, stop)
    state = json.loads(json.dumps(it.get_state()))  # what Orbax stores: plain JSON
    expected = _take(it, 20)
    resumed = iter(_mix())
    resumed.set_state(state)
    assert _take(resumed, 20) == expected


@pytest.mark.parametrize("shard_count", [2, 4])
def test_processes_split_the_global_layout_row_for_row(shard_count):
    single = _take(iter(_mix(batch_size=4 * shard_count)), 4 * shard_count * 11)
    shards = [iter(_mix(shard_index=p, shard_count=shard_count)) for p in range(shard_count)]
    union = [row for _ in range(11) for it in shards for row in _take(it, 4)]  # steps, then processes
    assert union == single


def test_resume_into_changed_weights_is_an_error_but_a_later_stage_may_change():
    it = iter(_mix())
    _take(it, 22)
    state = it.get_state()
    changed_now = [STAGES[0], (5, {"a": 0.4, "c": 0.6}), STAGES[2]]
    with pytest.raises(ValueError, match="saved in a stage starting at step 5 with other weights"):
        iter(_mix(changed_now)).set_state(state)
    resumed = iter(_mix([*STAGES[:2], (9, {"a": 1.0})]))
    resumed.set_state(state)
    assert NAMES[_take(resumed, 15)[-1][0]] == "a"  # sequence 36: step 9


def test_batches_of_the_mix_and_their_state():
    ds = _mix().batch(4, drop_remainder=True)
    it = iter(ds)
    assert all(b[1].shape == (4,) for b in _take(it, 6))
    again = iter(ds)
    again.set_state(it.get_state())
    np.testing.assert_array_equal(next(again)[1], next(it)[1])


def test_bad_stages():
    with pytest.raises(ValueError, match="unknown domains \\['d'\\]"):
        _mix([(0, {"a": 1.0, "d": 1.0})])
    with pytest.raises(ValueError, match="the first stage must start at step 0"):
        _mix([(2, {"a": 1.0})])
    with pytest.raises(ValueError, match="shard_index=2"):
        _mix(shard_index=2, shard_count=2)
