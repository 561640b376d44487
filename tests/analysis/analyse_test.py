"""The routing analysis on synthetic traces placed where `analyse` reuses them: bad input warns and the
comparable part is still computed; unusable workdirs are one-line errors; training counts alone suffice."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import quickstart
from mixlab import configlib
from mixlab.analysis import analyse, metrics, options, trace
from mixlab.data import DOMAINS
from tests.analysis import synthetic_traces

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPTS = options.Options(tokens_per_domain=64, mask_top=(1,), plots=False)


def make_workdir(tmp_path, name, **model):
    c = quickstart.get_config("runlocal")
    c.model.update(model)
    if name == "wo_code":
        c.data.arm = "remove:code"
    path = tmp_path / name
    path.mkdir()
    (path / "config.json").write_text(c.to_json_best_effort())
    return str(path)


def place_trace(out, run, step, tr, losses=None):
    tr.save(trace.trace_path(out, run, step))
    meta = {"tokens_per_domain": OPTS.tokens_per_domain, "seed": 0, "mask_top": [1], "domains": list(DOMAINS)}
    meta["loss"] = losses or {d: {"loss": 2.0, "loss_se": 0.01} for d in DOMAINS}
    with open(trace.meta_path(out, run, step), "w") as f:
        json.dump(meta, f)


def random_trace(layers=2, experts=8, seed=0, drop=None):
    """A random trace; `layers=3` repeats the last of the same 2-layer trace, `drop` removes a domain."""
    tr = synthetic_traces.random(
        tokens=1200, layers=2, num_experts=experts, top_k=2, names=DOMAINS, seed=seed
    )
    keep = tr.domain_T != (DOMAINS.index(drop) if drop else -1)
    e_NTK, g_NTK = tr.experts_NTK[:, keep], tr.gates_NTK[:, keep]
    if layers == 3:
        e_NTK, g_NTK = np.concatenate([e_NTK, e_NTK[-1:]]), np.concatenate([g_NTK, g_NTK[-1:]])
    arrays = (e_NTK, g_NTK, tr.domain_T[keep], tr.token_T[keep], tr.position_T[keep])
    return trace.Trace.build(*arrays, DOMAINS, experts)


def test_mismatched_arms_warn_and_the_comparable_part_is_computed(tmp_path):
    out = str(tmp_path / "out")
    full = make_workdir(tmp_path, "full")
    wide = make_workdir(tmp_path, "wide", num_experts=16)
    deep = make_workdir(tmp_path, "deep", num_layers=3)
    wo_code = make_workdir(tmp_path, "wo_code")
    for step in (5, 10):
        place_trace(out, "full", step, random_trace(seed=1))
        place_trace(out, "deep", step, random_trace(layers=3, seed=1))
    place_trace(out, "wide", 10, random_trace(experts=16))
    math_hurt = {d: {"loss": 2.5 if d == "math" else 2.0, "loss_se": 0.01} for d in DOMAINS}
    place_trace(out, "wo_code", 10, random_trace(seed=1, drop="code"), losses=math_hurt)
    opts = options.Options(**{**OPTS.__dict__, "all_steps": True})
    result = analyse.analyse([full, wide, deep, wo_code], out, opts=opts)
    warnings = "\n".join(result["warnings"])
    assert "cross-arm wide vs full at step 10: wide has 16 experts, full 8" in warnings
    assert "deep has 3 MoE layers, full 2; comparing the first 2 by position" in warnings
    assert "domain 'code' has no tokens in wo_code; skipped" in warnings
    assert "wide has no step 5 (has [10]); skipped at that step" in warnings
    assert "wo_code step 10: domain 'code' has no tokens in the sample" in warnings
    cross = result["cross_arm_jsd"]
    assert cross["wide"]["10"]["layers"] == {}
    assert sorted(cross["deep"]) == ["10", "5"] and sorted(cross["deep"]["10"]["layers"]) == ["0", "1"]
    assert cross["deep"]["10"]["layers"]["0"]["math"] == 0  # same routing in the first layers
    no_code = cross["wo_code"]["10"]["layers"]["0"]
    assert "code" not in no_code and no_code["math"] == 0 and len(no_code) == len(DOMAINS) - 1
    comp = result["competition"]["wo_code"]["10"]
    assert comp["intervention"] == "code" and comp["effects"]["math"]["sign"] == 1  # code helped math
    assert comp["effects"]["text"]["sign"] == 0  # no loss change: no measurable effect
    # Per-run metrics are there for every run, whatever the comparisons could do.
    assert result["runs"]["wide"]["steps"]["10"]["layers"]["1"]["all"]["effective_experts"] > 1
    assert result["runs"]["wo_code"]["steps"]["10"]["layers"]["0"]["domains"]["code"]["entropy"] is None
    with open(os.path.join(out, "summary.md")) as f:
        summary = f.read()
    assert "## Warnings" in summary and "## wo_code (step 10, trace)" in summary


def test_workdir_without_checkpoint_is_a_one_line_error(tmp_path):
    wd = make_workdir(tmp_path, "empty")
    with pytest.raises(configlib.ConfigError, match=r"no checkpoint under .*empty/checkpoints"):
        analyse.analyse([wd], str(tmp_path / "out"), opts=OPTS)
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.routing", "--workdirs", wd, "--out", str(tmp_path / "o")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: no checkpoint under {wd}/checkpoints"


def test_dense_model_and_missing_workdir_are_errors(tmp_path):
    dense = make_workdir(tmp_path, "dense", num_experts=0)
    with pytest.raises(configlib.ConfigError, match="dense model"):
        analyse.analyse([dense], str(tmp_path / "out"), opts=OPTS)
    with pytest.raises(configlib.ConfigError, match=r"config\.json not found"):
        analyse.analyse([str(tmp_path / "nowhere")], str(tmp_path / "out"), opts=OPTS)


def test_training_counts_alone(tmp_path):
    a, b = make_workdir(tmp_path, "a"), make_workdir(tmp_path, "b")
    counts = synthetic_traces.specialised(tokens_per_domain=10, num_domains=3, layers=2).counts_NDE
    for wd in (a, b):
        with open(os.path.join(wd, "routing_train_counts.json"), "w") as f:
            json.dump({"since_step": 0, "domains": ["code", "math", "text"],
                       "counts_layer_domain_expert": counts.astype(float).tolist()}, f)  # fmt: skip
    opts = options.Options(**{**OPTS.__dict__, "traces": False, "plots": True})
    result = analyse.analyse([a, b], str(tmp_path / "out"), opts=opts)
    layer = result["runs"]["a"]["train_counts"]["layers"]["1"]
    assert layer["jsd"]["code"]["math"] == pytest.approx(1) and layer["overlap"]["code"]["math"] == 0
    assert layer["domains"]["math"]["expert_set"] == [2, 3]
    expected = metrics.count_metrics(counts, top_k=2)
    assert layer["all"]["entropy"] == pytest.approx(expected["entropy_N"][1])
    assert result["cross_arm_jsd_train_counts"]["b"]["0"] == {"code": 0, "math": 0, "text": 0}
    assert os.path.exists(tmp_path / "out" / "plots" / "a_train_counts_activation.png")


def test_trace_file_round_trip(tmp_path):
    tr = random_trace(seed=3)
    path = tr.save(str(tmp_path / "t" / "traces_step_1.npz"))
    back = trace.Trace.load(path)
    for name in ("experts_NTK", "gates_NTK", "domain_T", "token_T", "position_T", "counts_NDE"):
        np.testing.assert_array_equal(getattr(back, name), getattr(tr, name))
    assert back.domain_names == tuple(DOMAINS) and back.num_experts == 8 and back.top_k == 2


def test_workdirs_flag_takes_spaces_or_commas():
    argv = ["prog", "--workdirs", "a", "b", "--out", "o"]
    assert analyse.join_list_flag(argv, "--workdirs") == ["prog", "--workdirs=a,b", "--out", "o"]
    assert analyse.join_list_flag(["p", "--workdirs=a,b"], "--workdirs") == ["p", "--workdirs=a,b"]


def test_paired_standard_error_uses_the_per_token_difference():
    tr = synthetic_traces.specialised(tokens_per_domain=4, num_domains=2)
    info = {"mixture": {}}
    ref = options.RunRouting("ref", "-", info, traces={1: tr}, nll={1: np.zeros(8, np.float32)})
    diff = np.array([1, 1, 1, 1, 0, 2, 0, 2], np.float32)  # domain 0: constant shift, domain 1: spread
    arm = options.RunRouting("arm", "-", info, traces={1: tr}, nll={1: diff})
    se = analyse.paired_se(ref, 1, arm, 1)
    assert se["d0"] == 0 and se["d1"] == pytest.approx(np.std([0, 2, 0, 2], ddof=1) / 2)
    other = options.RunRouting(
        "o", "-", info, traces={1: synthetic_traces.specialised(5, 2)}, nll={1: np.zeros(10)}
    )
    assert analyse.paired_se(ref, 1, other, 1) == {}  # other tokens: no pairing


def test_sweep_runs_are_named_by_their_arm():
    assert analyse.run_name("runs/study/no_code/seed_1") == "no_code"
    assert analyse.run_name("runs/study/no_code/seed_1/") == "no_code"
    assert analyse.run_name("runs/full") == "full"
    assert analyse.run_name("runs/seed_data") == "seed_data"
