"""Schedules and the data plan: stage starts, requested tokens, the repetition limit, config errors."""

import math

import ml_collections
import pytest

from mixlab.data.plan import DEFAULTS, resolve_plan
from mixlab.data.schedule import parse_schedule

SIX = ("text", "code", "code_text", "math", "math_traces", "code_math")


def _cfg(**kw):
    return ml_collections.ConfigDict({"weights": {"text": 0.6, "code": 0.4}, "seq_len": 8, **kw})


def _plan(cfg, batch=4):
    return resolve_plan(cfg, global_batch_size=batch, domains=SIX)


def test_starts_in_steps_and_tokens():
    # 4 sequences x 8 tokens = 32 tokens per step: 100 tokens start at step ceil(100 / 32) = 4.
    stages = parse_schedule(
        [(0, {"a": 1}), ({"tokens": 100}, {"b": 1}), ({"steps": 9}, {"c": 1}), (12, {})], tokens_per_step=32
    )
    assert [s for s, _ in stages] == [0, 4, 9, 12]
    assert (
        parse_schedule([(0, {}), ({"tokens": 64}, {})], tokens_per_step=32)[1][0] == 2
    )  # exact: no round-up


@pytest.mark.parametrize(
    "schedule, message",
    [
        ([], "data.schedule = [] must be a non-empty list"),
        ("0:text", "must be a non-empty list of (start, weights) pairs"),
        ([(5, {"text": 1})], "data.schedule[0]: the first stage must start at step 0, not 5"),
        (
            [(0, {"text": 1}), (3, {"code": 1}), (3, {"text": 1})],
            "data.schedule[2]: start 3 (step 3) is not after",
        ),
        (
            [(0, {"text": 1}), ({"tokens": 10}, {"code": 1}), ({"tokens": 20}, {"text": 1})],
            "data.schedule[2]: start {'tokens': 20} (step 1) is not after the previous stage's step 1",
        ),
        (
            [(0, {"text": 1}), ({"percent": 50}, {"code": 1})],
            "must be a step count or one of ('steps', 'tokens')",
        ),
        (
            [(0, {"text": 1}), (2.5, {"code": 1})],
            "data.schedule[1]: start 2.5 is not a whole number of steps",
        ),
        ([(0, {"text": 1}), (-1, {"code": 1})], "data.schedule[1]: start -1 must be a non-negative number"),
        ([(0, {"text": 1}), (3,)], "data.schedule[1] = (3,) must be a (start, weights) pair"),
        ([(0, "text")], "data.schedule[0]: weights 'text' must be a dict"),
    ],
)
def test_bad_schedules(schedule, message):
    with pytest.raises(ValueError) as e:
        parse_schedule(schedule, tokens_per_step=32)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_plan_without_new_keys_uses_defaults():
    plan = _plan(_cfg())
    assert (plan.arm, plan.max_epochs, plan.allow_repeat, len(plan.stages)) == ("base", 1.0, False, 1)
    assert DEFAULTS == {"schedule": None, "arm": "", "max_epochs": 1.0, "allow_repeat": False}
    assert plan.names == SIX and plan.active == ("text", "code")


def test_plan_stages_tokens_and_arm():
    cfg = _cfg(weights={}, schedule=[(0, {"text": 0.5, "code": 0.5}), ({"tokens": 320}, {"math": 1.0})])
    cfg.arm = "remove:code:fill:text"
    plan = _plan(cfg)  # 32 tokens per step: stage 2 starts at step 10
    assert [s.start_step for s in plan.stages] == [0, 10]
    assert [plan.stage_at(s) for s in (0, 9, 10, 99)] == [0, 0, 1, 1]
    assert plan.active == ("text", "math")
    assert plan.sequences(15) == {**dict.fromkeys(SIX, 0.0), "text": 40.0, "math": 20.0}
    base = plan.sequences(15, base=True)
    assert (base["text"], base["code"], base["math"]) == (20.0, 20.0, 20.0)
    assert plan.tokens(15)["text"] == 40 * 8


def test_hold_shrinks_the_run():
    plan = _plan(_cfg(arm="remove:code:hold"))
    assert math.isclose(plan.budget_scale, 0.6) and plan.run_steps(100) == 60
    assert math.isclose(plan.tokens(plan.run_steps(100))["text"], plan.tokens(100, base=True)["text"])


def test_repetition_limit_names_the_domain():
    plan = _plan(_cfg())  # 100 steps x 4 x 0.4 = 160 code sequences x 9 tokens = 1,440 tokens
    available = {"text": 10_000, "code": 1_000}
    with pytest.raises(ValueError) as e:
        plan.check_repetition(100, available)
    msg = str(e.value)
    assert "'code': 1,440 tokens requested, 1,000 available (1.44 epochs)" in msg
    assert "data.allow_repeat = True" in msg and "'text'" not in msg
    assert plan.check_repetition(69, available)["code"] < 1.0  # 69 x 1.6 x 9 = 993.6 tokens: fits
    epochs = _plan(_cfg(allow_repeat=True)).check_repetition(100, available)
    assert math.isclose(epochs["code"], 1.44) and math.isclose(epochs["text"], 100 * 4 * 0.6 * 9 / 10_000)
    assert _plan(_cfg(max_epochs=2.0)).check_repetition(100, available)["code"] == pytest.approx(1.44)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"schedule": [(0, {"text": 1})]}, "data.weights and data.schedule are both set"),
        ({"weights": {}, "schedule": [(0, {"web": 1})]}, "data.schedule[0] weights: unknown domain 'web'"),
        (
            {"weights": {}, "schedule": [(0, {"text": 1}), (2, {"code": -1})]},
            "data.schedule[1] weights['code'] = -1",
        ),
        ({"weights": {}}, "data.weights is empty"),
        ({"arm": "remove:web"}, "data.arm 'remove:web': unknown domain 'web'"),
        ({"max_epochs": 0}, "data.max_epochs = 0 must be a positive number"),
        ({"allow_repeat": "yes"}, "data.allow_repeat = 'yes' must be True or False"),
        ({"seq_len": 0}, "data.seq_len = 0 must be a positive integer"),
    ],
)
def test_bad_data_configs(overrides, message):
    cfg = _cfg()
    for k, v in overrides.items():
        if k in cfg:
            del cfg[k]
        cfg[k] = v
    with pytest.raises(ValueError) as e:
        _plan(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)
