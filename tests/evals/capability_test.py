"""Capability table: bootstrap coverage, relative change and its sign, dimensions, files in and out."""

import json

import numpy as np
import pytest

from mixlab.evals import capability, dimensions, suite
from tests.evals import fakes


def _experiment(rng, seeds=5, items=100):
    """Scores = true mean + item effect (shared by all seeds) + seed effect + noise."""
    a, b = rng.normal(0, 1.0, items), rng.normal(0, 0.1, seeds)
    return 0.5 + a[None, :] + b[:, None] + rng.normal(0, 0.5, (seeds, items))


def _nested_ci(x, rng, replicates=500):
    """The alternative design: each drawn seed gets its own item draw."""
    s, n = x.shape
    seed_idx = rng.integers(0, s, (replicates, s))
    item_idx = rng.integers(0, n, (replicates, s, n))
    means = x[seed_idx[:, :, None], item_idx].mean(axis=(1, 2))
    return np.percentile(means, [2.5, 97.5])


def test_the_95_percent_interval_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(2024)
    crossed = nested = 0
    for e in range(200):
        x = _experiment(rng)
        _, lo, hi = capability.bootstrap_ci(x, replicates=1000, rng_seed=e)
        crossed += lo <= 0.5 <= hi
        lo, hi = _nested_ci(x, rng)
        nested += lo <= 0.5 <= hi
    assert 0.90 <= crossed / 200 <= 0.99
    # Why the items are drawn once per resample: an independent draw per seed undercovers (~0.75 here).
    assert nested / 200 < 0.85


def test_bootstrap_is_reproducible_and_centred():
    x = _experiment(np.random.default_rng(0))
    assert capability.bootstrap_ci(x) == capability.bootstrap_ci(x)
    mean, lo, hi = capability.bootstrap_ci(x)
    assert mean == pytest.approx(x.mean()) and lo < mean < hi


def _results(scale_math=1.0, bpb=2.0, seeds=(0, 1, 2)):
    """One arm: math items (10), humaneval items (5) and a text bpb; seed s shifts math by 0.01*s."""
    out = {}
    for s in seeds:
        math_scores = {f"m{i}": scale_math * (0.5 + 0.01 * s + (0.1 if i % 2 else -0.1)) for i in range(10)}
        out[s] = {
            "math/gcd": math_scores,
            "humaneval": [1.0, 0.0, 1.0, 1.0, 0.0],
            "bpb/text": {"text": bpb + 0.01 * s},
        }
    return out


def test_relative_change_and_its_sign_for_lower_is_better_metrics():
    table, md = capability.capability_table(
        {"full": _results(), "w/o code": _results(scale_math=0.8, bpb=2.2)}, reference="full", replicates=500
    )
    rows = {r["name"]: r for r in table["rows"]}
    assert [r["name"] for r in table["rows"]] == [
        "held-out bpb",
        "bpb/text",
        "programming",
        "humaneval",
        "math",
        "math/gcd",
    ]
    m = rows["math"]["arms"]["w/o code"]
    assert m["delta_pct"] == pytest.approx(-20.0) and m["gain_pct"] == pytest.approx(-20.0)
    assert m["delta_pct_ci"][0] <= -20.0 <= m["delta_pct_ci"][1]
    t = rows["held-out bpb"]["arms"]["w/o code"]
    ref_bpb = 2.01  # mean over seeds of 2.0 + 0.01*s
    assert t["delta_pct"] == pytest.approx(100 * 0.2 / ref_bpb)  # bpb went up: raw change is +
    assert t["gain_pct"] == pytest.approx(-t["delta_pct"]) and t["gain_pct_ci"][1] < 0  # ... which is worse
    assert rows["held-out bpb"]["higher_is_better"] is False and rows["math"]["higher_is_better"] is True
    h = rows["humaneval"]["arms"]["w/o code"]
    assert h["delta_pct"] == 0.0 and h["delta_pct_ci"] == [0.0, 0.0]  # identical scores, paired draws
    assert rows["math"]["arms"]["full"]["seed_scores"] == {
        "0": pytest.approx(0.5),
        "1": pytest.approx(0.51),
        "2": pytest.approx(0.52),
    }
    assert "| **held-out bpb ↓** |" in md and "Δ% w/o code" in md and "-20.0 [" in md


def test_a_zero_reference_score_leaves_the_relative_change_undefined():
    zero = {s: {"humaneval": [0.0, 0.0, 0.0]} for s in (0, 1)}
    some = {s: {"humaneval": [1.0, 0.0, 0.0]} for s in (0, 1)}
    table, md = capability.capability_table({"full": zero, "arm": some}, "full", replicates=200)
    arm = table["rows"][0]["arms"]["arm"]
    assert arm["delta_pct"] is None and arm["delta_abs"] == pytest.approx(1 / 3)
    assert "n/a (Δ +0.3" in md


def test_inconsistent_inputs_are_errors():
    with pytest.raises(ValueError, match="reference arm"):
        capability.capability_table({"a": _results()}, "full")
    short = _results()
    short[1]["humaneval"] = [1.0, 0.0]
    with pytest.raises(ValueError, match="items"):
        capability.capability_table({"full": short}, "full", replicates=10)
    with pytest.raises(ValueError, match="mixes"):
        capability.capability_table(
            {"full": _results()}, "full", dimensions={"bpb/text": "math"}, replicates=10
        )


def test_metrics_missing_somewhere_are_dropped_and_named():
    other = _results()
    for s in other:
        del other[s]["humaneval"]
    table, md = capability.capability_table({"full": _results(), "b": other}, "full", replicates=10)
    assert table["dropped_metrics"] == ["humaneval"] and "left out: humaneval" in md


def test_the_dimension_map():
    assert dimensions.dimension_of("math/word") == "reasoning"
    assert dimensions.dimension_of("math/linear") == "math"
    assert dimensions.dimension_of("math_extrap/word") == "extrapolation"
    assert dimensions.dimension_of("output_pred/list") == "reasoning"
    assert dimensions.dimension_of("humaneval") == dimensions.dimension_of("code_gen/string") == "programming"
    assert dimensions.dimension_of("bpb/code") == "held-out bpb" and not dimensions.higher_is_better(
        "bpb/code"
    )
    assert dimensions.dimension_of("file:x") == "other"


def test_a_table_from_run_directories(tmp_path):
    from mixlab.evals import math_tasks

    tasks = math_tasks.load(families=["gcd", "word"], per_cell=1)
    runs = {}
    for arm, generate_fn in (("full", fakes.oracle(tasks)), ("w/o math", fakes.garbage)):
        runs[arm] = {}
        for seed in (0, 1):
            workdir = tmp_path / f"{arm.replace('/', '')}-{seed}"
            suite.write(str(workdir), 300, suite.evaluate(tasks, generate_fn))
            (workdir / "eval" / "step_300.json").write_text(
                json.dumps(
                    {
                        "step": 300,
                        "domains": {"text": {"loss": 2.0, "bpb": 3.0 + seed, "tokens": 1, "bytes": 1}},
                    }
                )
            )
            runs[arm][seed] = capability.run_metrics(str(workdir))
    assert set(runs["full"][0]) == {"bpb/text", "math/gcd", "math/word"}
    table, md = capability.capability_table(runs, "full", replicates=100)
    rows = {r["name"]: r["arms"]["w/o math"] for r in table["rows"]}
    assert rows["math"]["delta_pct"] == -100.0 and rows["reasoning"]["delta_pct"] == -100.0
    assert rows["held-out bpb"]["delta_pct"] == 0.0
    json_path, md_path = capability.write(str(tmp_path / "table"), table, md)
    with open(json_path) as f:
        assert json.load(f)["reference"] == "full"
    with open(md_path) as f:
        assert f.read() == md
