"""The sweep report on synthetic sweep directories: numbers recomputed from the files, outputs, errors."""

import csv
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from mixlab.configlib import ConfigError
from mixlab.report import build
from tests.report import synthetic_sweeps

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sweep"))
    effects = {"no_code": {"bpb/code": 0.1, "tasks:math": 8}, "scaffold": {"tasks:math": "noise"}}
    synthetic_sweeps.make_sweep(root, effects)
    synthetic_sweeps.write_run(root, "no_math", 5, effects, final_eval=False)  # a run without its final eval
    report = build.build(root, confidence=0.9, replicates=300)
    return root, report, effects


def _json(*parts):
    with open(os.path.join(*parts)) as f:
        return json.load(f)


def _text(*parts):
    with open(os.path.join(*parts)) as f:
        return f.read()


def _eval(root, arm, seed, step=100):
    return _json(root, arm, f"seed_{seed}", "eval", f"step_{step}.json")["domains"]


def _seq_bpb(result):
    return [n / (math.log(2) * b) for n, b in zip(result["seq_nats"], result["seq_bytes"], strict=True)]


def test_capability_numbers_equal_a_recomputation_from_the_eval_files(built):
    root, report, _ = built
    table = report["capability"]["bpb"]
    row = next(r for r in table["rows"] if r["name"] == "bpb/code")
    means = {a: np.mean([_seq_bpb(_eval(root, a, s)["code"]) for s in range(5)]) for a in ("full", "no_code")}
    assert row["arms"]["full"]["score"] == pytest.approx(means["full"])
    assert row["arms"]["no_code"]["score"] == pytest.approx(means["no_code"])
    assert row["arms"]["no_code"]["delta_pct"] == pytest.approx(
        100 * (means["no_code"] - means["full"]) / means["full"]
    )
    assert table["confidence"] == 0.9 and report["capability"]["bpb_items"]["code"] == "sequences"
    c1 = next(c for c in report["claims"] if c["id"] == "C1")["primary"]
    assert c1["arm_score"] == pytest.approx(means["no_code"]) and c1["baseline_score"] == pytest.approx(
        means["full"]
    )

    tasks = report["capability"]["tasks"]
    math_rows = {r["name"]: r for r in tasks["rows"]}
    items = _json(root, "no_code", "seed_0", "eval", "tasks_step_100.json")["items"]
    gcd = np.mean([it["score"] for it in items if it["metric"] == "math/gcd"])
    assert math_rows["math/gcd"]["arms"]["no_code"]["score"] == pytest.approx(gcd)  # both seeds score alike


def test_results_csv_rows_equal_the_files(built):
    root = built[0]
    with open(os.path.join(root, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["arm", "seed", "step", "kind", "metric", "value", "items"]
    got = {(r["arm"], r["seed"], r["kind"], r["metric"]): r for r in rows}
    for arm in synthetic_sweeps.ARMS:
        for seed in range(5):
            domains = _eval(root, arm, seed)
            for d, v in domains.items():
                r = got[(arm, str(seed), "domain_bpb", d)]
                assert (
                    float(r["value"]) == pytest.approx(v["bpb"]) and r["step"] == "100" and r["items"] == "32"
                )
                assert float(got[(arm, str(seed), "domain_loss", d)]["value"]) == pytest.approx(v["loss"])
                seq = got[(arm, str(seed), "domain_bpb_seq_mean", d)]
                assert float(seq["value"]) == pytest.approx(np.mean(_seq_bpb(v)))
            audit = _json(root, arm, f"seed_{seed}", "data_audit.json")
            share = float(got[(arm, str(seed), "audit", "realised_share/code")]["value"])
            assert share == pytest.approx(audit["domains"]["code"]["realised_share"])
    # one row per (arm, seed, kind, metric) at the final step
    finals = [r for r in rows if r["kind"] != "routing"]
    assert len({(r["arm"], r["seed"], r["kind"], r["metric"]) for r in finals}) == len(finals)
    assert ("no_math", "5", "domain_bpb", "code") not in got  # the skipped run
    jsd = got[("no_code", "0", "routing", "jsd_vs_full/code")]
    assert float(jsd["value"]) == pytest.approx(0.2) and jsd["items"] == "2"  # layer mean of 0.19 and 0.21


def test_curves_audit_and_code_share_equal_the_files(built):
    root, report, _ = built
    curve = report["loss_curves"]["code"]["no_code"]
    assert curve["steps"] == [50, 100]
    for step, value in zip(curve["steps"], curve["loss"], strict=True):
        assert value == pytest.approx(
            np.mean([_eval(root, "no_code", s, step)["code"]["loss"] for s in range(5)])
        )
    audit = report["audit"]["arms"]["full"]["domains"]["code"]
    assert audit["requested_share"] == pytest.approx(0.2) and audit["realised_share"] == pytest.approx(0.202)
    points = {(p["arm"], p["seed"]): p for p in report["code_share"]["points"]}
    assert points[("code_50", 1)]["code_share"] == pytest.approx(0.501)
    assert points[("no_code", 0)]["metrics"]["bpb/code"] == pytest.approx(
        _eval(root, "no_code", 0)["code"]["bpb"]
    )
    assert report["code_share"]["family"] == ["full", "no_code", "code_50"]


def test_report_files_figures_and_markdown(built):
    root, report, _ = built
    for name in ("capability", "loss_curves", "audit", "code_share", "routing_jsd"):
        path = os.path.join(root, report["figures"][name])
        with open(path, "rb") as f:
            assert f.read(8) == PNG, name
        assert os.path.getsize(path) > 5000
    md = _text(root, "report.md")
    head = "| id | claim | comparison | expected (source) | primary metric | estimate | verdict |"
    assert head in md
    assert "Confidence level: **90%**" in md and "90% t interval over seeds" in md
    assert "skipped: no_math/seed_5: no final eval" in md
    assert "(routing/seed_0/plots/cross_arm_jsd_step100.png)" in md
    assert "## What the data shows" in md and "C1 (pure code lowers the loss of held-out code" in md
    assert "### A/A noise floor" in md and "### Answer-level likelihoods" in md
    assert "not evaluated: humaneval pass@1" in md  # C1's secondary metric no run has
    with open(os.path.join(root, "report.json")) as f:
        saved = json.load(f)
    assert [c["verdict"] for c in saved["claims"]] == [c["verdict"] for c in report["claims"]]
    assert (
        saved["runs"]["skipped"] == [s for s in report["runs"]["skipped"]]
        and len(saved["runs"]["skipped"]) == 1
    )
    for c in saved["claims"]:  # every verdict in the table
        assert f"**{c['verdict']}**" in md


@pytest.mark.slow
def test_routing_missing_is_said(tmp_path):
    synthetic_sweeps.make_sweep(str(tmp_path), routing=False, seeds=(0,))
    report = build.build(str(tmp_path), replicates=100)
    md = _text(tmp_path, "report.md")
    assert "Not available: no routing analysis" in md and "routing_jsd" not in report["figures"]


def test_bad_input_is_one_error_naming_the_culprit(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        build.compute(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"no sweep\.json; give --config"):
        build.compute(str(tmp_path))
    with pytest.raises(ConfigError, match="no runs"):
        build.compute(str(tmp_path), config=synthetic_sweeps.CONFIG)
    root = str(tmp_path / "s")
    synthetic_sweeps.make_sweep(root, arms=("full", "no_code"), seeds=(0,), routing=False)
    with pytest.raises(ConfigError, match=r"reference arm 'baseline' has no runs .* full, no_code"):
        build.compute(root, reference="baseline")
    with pytest.raises(ConfigError, match="--confidence"):
        build.compute(root, confidence=95)
    bad = os.path.join(root, "no_code", "seed_0", "eval", "step_50.json")
    with open(bad, "w") as f:
        f.write('{"step": 50, "domains": {')
    with pytest.raises(ConfigError, match=re.escape(f"{bad}: not valid JSON")):
        build.compute(root)


def test_the_reference_needs_its_final_eval(tmp_path):
    root = str(tmp_path)
    synthetic_sweeps.make_sweep(root, arms=("full", "no_code"), seeds=(0,), routing=False)
    synthetic_sweeps.write_run(root, "full", 1, final_eval=False)
    with pytest.raises(
        ConfigError, match=r"full/seed_1: no final eval .*step_100.json missing.*reference arm"
    ):
        build.compute(root)


def test_seeds_of_an_arm_with_other_items_are_an_error(tmp_path):
    root = str(tmp_path)
    synthetic_sweeps.make_sweep(root, arms=("full", "no_code"), routing=False)
    path = os.path.join(root, "no_code", "seed_1", "eval", "step_100.json")
    data = _json(path)
    for key in ("seq_nats", "seq_bytes", "seq_tokens"):
        data["domains"]["math"][key] = data["domains"]["math"][key][:-1]
    synthetic_sweeps.dump(path, data)
    with pytest.raises(ConfigError, match=r"arm 'no_code': no_code/seed_0 and no_code/seed_1 .*domain math"):
        build.compute(root)


@pytest.mark.slow
def test_command_line(tmp_path):
    synthetic_sweeps.make_sweep(str(tmp_path), arms=("full", "no_code"), seeds=(0,), routing=False)
    cmd = [sys.executable, "-m", "experiments.report", "--sweep_dir", str(tmp_path), "--replicates", "50"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    ok = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "C1 " in ok.stdout and os.path.exists(tmp_path / "report.md")
    bad = subprocess.run(
        [*cmd[:4], str(tmp_path / "missing")], capture_output=True, text=True, env=env, check=False
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "no such directory" in bad.stderr
