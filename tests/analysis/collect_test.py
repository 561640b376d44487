"""Traces from real checkpoints: sharded equals unsharded; the analysis end to end on two arms."""

import json
import os
import shutil

import numpy as np
import pytest

from configs import quickstart
from mixlab import train
from mixlab.analysis import analyse, collect, options
from mixlab.analysis.trace import Trace


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    c = quickstart.get_config("runlocal")
    c.train.steps, c.checkpoint.every, c.checkpoint.keep = 2, 1, 5
    c.mesh = {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}
    path = str(tmp_path_factory.mktemp("runs") / "full")
    train.train(c, path)
    return path


@pytest.mark.slow
def test_sharded_traces_equal_unsharded(workdir):
    kw = dict(tokens_per_domain=200, domains=("code", "math"), mask_top=(1,))
    one, info1 = collect.collect(workdir, 2, num_devices=1, **kw)
    eight, info8 = collect.collect(workdir, 2, num_devices=8, **kw)
    assert one.experts_NTK.shape == (2, 400, 2)  # 2 MoE layers, 2 domains x 200 tokens, top-2
    assert one.tokens_per_domain() == {"code": 200, "math": 200}
    np.testing.assert_array_equal(one.experts_NTK, eight.experts_NTK)
    np.testing.assert_allclose(one.gates_NTK, eight.gates_NTK, rtol=1e-5, atol=1e-6)
    for a in ("domain_T", "token_T", "position_T", "counts_NDE"):
        np.testing.assert_array_equal(getattr(one, a), getattr(eight, a))
    for d in ("code", "math"):
        assert info1["loss"][d]["loss"] == pytest.approx(info8["loss"][d]["loss"], rel=1e-5)
        r1, r8 = info1["redundancy"][d], info8["redundancy"][d]
        assert r1["delta_loss"]["1"] == pytest.approx(r8["delta_loss"]["1"], rel=1e-4, abs=1e-5)
        # Masking each token's first choice changes the loss (its sign is not fixed after 2 steps from
        # an init whose expert outputs are still small and random).
        assert abs(r1["delta_loss"]["1"]) > 1e-4
    # The sample is whole sequences: positions count up from 0 within each.
    starts = np.flatnonzero(one.position_T == 0)
    assert np.all(np.diff(one.position_T)[np.diff(one.position_T) != 1] < 0) and starts[0] == 0


@pytest.mark.slow
def test_analysis_end_to_end_on_two_identical_arms(workdir, tmp_path):
    twin = str(tmp_path / "twin")
    shutil.copytree(workdir, twin)
    out = str(tmp_path / "out")
    domains = ("text", "code", "math")
    opts = options.Options(all_steps=True, tokens_per_domain=128, mask_top=(), domains=domains)
    result = analyse.analyse([workdir, twin], out, reference=workdir, opts=opts)
    full = result["runs"]["full"]
    assert sorted(full["steps"]) == ["1", "2"] and full["num_experts"] == 8
    layer = full["steps"]["2"]["layers"]["1"]
    assert layer["all"]["saturation"] == 1.0  # the final step against itself
    assert 0 <= full["steps"]["1"]["layers"]["0"]["all"]["saturation"] <= 1
    assert tuple(layer["domains"]) == domains
    assert layer["jsd"]["code"]["code"] == 0 and layer["jsd"]["code"]["math"] >= 0
    # The twin is the same run: cross-arm JSD 0 everywhere, and no cross-domain effect to measure.
    twin_jsd = result["cross_arm_jsd"]["twin"]
    assert sorted(twin_jsd) == ["1", "2"]
    assert all(v == 0 for s in twin_jsd.values() for lay in s["layers"].values() for v in lay.values())
    assert any("same mixture as the reference" in w for w in result["warnings"])
    assert full["train_counts"]["layers"]["0"]["domains"]["code"]["tokens"] > 0
    assert result["cross_arm_jsd_train_counts"]["twin"]["0"]["math"] == 0
    assert full["steps"]["2"]["loss"]["math"]["tokens"] == 128
    with open(os.path.join(out, "summary.md")) as f:
        summary = f.read()
    assert "| layer | JSD(code, math) bits |" in summary and "## twin (step 2, trace)" in summary
    pngs = set(os.listdir(os.path.join(out, "plots")))
    for name in (
        "full_step2_activation.png",
        "full_step2_jsd.png",
        "full_step2_coactivation.png",
        "cross_arm_jsd_step2.png",
        "saturation.png",
        "full_train_counts_activation.png",
    ):
        assert name in pngs, name  # fmt: skip
    saved = Trace.load(os.path.join(out, "full", "traces_step_2.npz"))
    with np.load(os.path.join(out, "full", "traces_step_2.npz")) as z:
        assert sorted(z.files) == sorted(
            ["experts", "gates", "domain", "token_id", "position", "domain_names", "counts"]
        )
        assert z["experts"].dtype == np.int32 and z["gates"].dtype == np.float32
    assert saved.num_tokens == 3 * 128 and saved.domain_names == domains
    # A second call reuses the traces (the twin's checkpoints are no longer needed): same numbers.
    shutil.rmtree(os.path.join(twin, "checkpoints"))
    again = analyse.analyse([workdir, twin], out, reference=workdir, opts=opts)
    assert json.dumps(again["runs"]["twin"]) == json.dumps(result["runs"]["twin"])
