"""End-to-end training invariants on the real quickstart config under `runlocal`."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import quickstart
from mixlab import configlib, train
from mixlab.data import DOMAINS
from mixlab.evals import run as eval_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config(**train_overrides):
    c = quickstart.get_config("runlocal")
    c.train.steps = 6
    c.train.log_every = 1
    c.checkpoint.every = 3
    c.mesh = {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}
    c.train.update(train_overrides)
    return c


def losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return {r["step"]: r["train/loss"] for r in rows}


@pytest.mark.slow
def test_resume_reproduces_uninterrupted_run(tmp_path):
    full, parts = str(tmp_path / "full"), str(tmp_path / "parts")
    train.train(config(), full)
    train.train(config(halt_at_step=4), parts)  # interrupted after step 4 (checkpointed there)
    assert sorted(losses(parts)) == [1, 2, 3, 4]
    train.train(config(), parts)  # the same command resumes from step 4
    assert losses(parts) == losses(full)  # bit for bit, same data order and same updates
    assert sorted(int(s) for s in os.listdir(os.path.join(full, "checkpoints"))) == [3, 6]
    for name in ("config.json", "tokenizer.json", "data_audit.json"):  # beside the checkpoints
        assert os.path.exists(os.path.join(full, name)), name
    with open(os.path.join(full, "metrics.jsonl")) as f:
        last = json.loads(f.readlines()[-1])
    assert 0 < last["perf/mfu"] < 1 and last["perf/tokens_per_s"] > 0


@pytest.mark.slow
def test_sharded_training_equals_single_device(tmp_path):
    one, eight = str(tmp_path / "one"), str(tmp_path / "eight")
    train.train(config(steps=3), one)
    c = config(steps=3)
    c.mesh = {"data": 2, "fsdp": 1, "expert": 4, "tensor": 1}
    train.train(c, eight)
    a, b = losses(one), losses(eight)
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[s] for s in a], [b[s] for s in a], rtol=2e-5)


@pytest.mark.slow
def test_eval_writes_per_domain_losses(tmp_path):
    workdir = str(tmp_path)
    train.train(config(steps=3), workdir)
    path, _ = eval_run.evaluate_checkpoint(workdir)
    assert path == os.path.join(workdir, "eval", "step_3.json")
    with open(path) as f:
        saved = json.load(f)
    assert set(saved["domains"]) == set(DOMAINS)  # every domain, read by the run or not
    for r in saved["domains"].values():
        assert 0 < r["loss"] < 7 and r["tokens"] > 0
        # Byte tokenizer: bits per byte is the loss in bits over targets that are bytes (eos is not).
        assert r["bpb"] == pytest.approx(r["loss"] * r["tokens"] / (np.log(2) * r["bytes"]))


@pytest.mark.parametrize(
    "key, value, culprit",
    [
        ("data.weights", {"text": 1.0, "poetry": 1.0}, "poetry"),
        ("data.weights", {"text": -1.0, "code": 1.0}, "negative"),
        ("data.weights", {"text": 0.0, "code": 0.0}, "sum to 0"),
        ("model.top_k", 9, "model.top_k"),
        ("mesh", {"data": 16}, "16"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path, key, value, culprit):
    c = config()
    section, name = key.split(".") if "." in key else (None, key)
    with c.unlocked():
        if section:
            c[section][name] = value
        else:
            c[name] = value
    with pytest.raises(configlib.ConfigError, match=culprit):
        train.train(c, str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")  # failed before anything was written


def test_unwritable_workdir(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(configlib.ConfigError, match="not writable"):
        train.train(config(), str(tmp_path / "file" / "sub"))


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--config.train.nonexistent=1"], "nonexistent"),
        (["--config", "configs/quickstart.py:runlocal,bogus=1"], "bogus"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, culprit):
    if args[0] != "--config":
        args = ["--config", "configs/quickstart.py:runlocal", *args]
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.train", *args, "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2  # a usage error, like every other entry point's
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and culprit in lines[0], proc.stderr


@pytest.mark.slow
def test_restore_on_other_device_count_gives_same_eval(tmp_path):
    c = config(steps=3)
    c.mesh = {"data": 2, "fsdp": 1, "expert": 4, "tensor": 1}
    train.train(c, str(tmp_path))
    _, on_eight = eval_run.evaluate_checkpoint(str(tmp_path))
    _, on_one = eval_run.evaluate_checkpoint(str(tmp_path), num_devices=1)
    for domain, r in on_eight.items():
        assert on_one[domain]["loss"] == pytest.approx(r["loss"], rel=1e-5)


@pytest.mark.slow
def test_sigterm_saves_and_resume_matches(tmp_path):
    stopped, reference = tmp_path / "stopped", tmp_path / "reference"
    overrides = ["--config.train.steps=400", "--config.train.log_every=1", "--config.checkpoint.every=1000"]
    overrides += [f"--config.mesh.{axis}=1" for axis in ("data", "fsdp", "expert", "tensor")]
    command = [sys.executable, "-m", "experiments.train", "--config", "configs/quickstart.py:runlocal"]
    proc = subprocess.Popen(
        [*command, *overrides, "--workdir", str(stopped)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while not (stopped / "metrics.jsonl").exists() or not (stopped / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "SIGTERM: saved step" in out
    saved = sorted(int(s) for s in os.listdir(stopped / "checkpoints"))
    assert len(saved) == 1 and 0 < saved[0] < 400
    halt = saved[0] + 2
    c = config(steps=400, halt_at_step=halt)
    c.checkpoint.every = 1000
    train.train(c, str(stopped))  # resumes from the SIGTERM checkpoint
    train.train(c, str(reference))
    assert losses(stopped) == losses(reference)


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back(tmp_path, caplog):
    workdir = str(tmp_path)
    train.train(config(), workdir)  # checkpoints at 3 and 6
    for root, _, files in os.walk(tmp_path / "checkpoints" / "6" / "state"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"corrupt")
    train.train(config(steps=7), workdir)  # wants to resume from 6, must fall back to 3
    assert "checkpoint step 6" in caplog.text and "unreadable" in caplog.text
    assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == [3, 6, 7]  # 6 trained again
    assert [p.split("-")[0] for p in os.listdir(tmp_path / "checkpoints_unreadable")] == ["6"]  # kept


@pytest.mark.slow
def test_nan_guard_keeps_last_good_checkpoint_and_says_what_is_on_disk(tmp_path):
    c = config(lr=float("nan"))
    c.checkpoint.every = 1
    with pytest.raises(FloatingPointError, match=r"between step 1 and 2 .*checkpoints on disk: steps \[1\]"):
        train.train(c, str(tmp_path / "one"))
    assert sorted(int(s) for s in os.listdir(tmp_path / "one" / "checkpoints")) == [1]
    c.checkpoint.every = 3  # the first save was due after the loss went NaN: none was written
    with pytest.raises(FloatingPointError, match=r"no checkpoint is on disk .*a rerun starts from step 0"):
        train.train(c, str(tmp_path / "none"))
    assert os.listdir(tmp_path / "none" / "checkpoints") == []


@pytest.mark.slow
def test_resume_with_another_mixture_is_refused(tmp_path):
    train.train(config(steps=1), str(tmp_path))
    c = config(steps=2)
    c.data.weights["code"] = 0.5
    with pytest.raises(configlib.ConfigError, match=r"data\.weights\.code: 0\.15 -> 0\.5"):
        train.train(c, str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]  # nothing moved aside


@pytest.mark.slow
def test_resume_with_another_model_shape_is_refused(tmp_path):
    train.train(config(steps=1), str(tmp_path))
    c = config(steps=2)
    c.model.d_model = 32
    with pytest.raises(configlib.ConfigError, match=r"model\.d_model: 64 -> 32"):
        train.train(c, str(tmp_path))


@pytest.mark.slow
def test_gradient_accumulation_equals_the_full_batch(tmp_path):
    def dense(**overrides):
        c = quickstart.get_config("runlocal,experts=0")  # MoE balancing losses are per micro-batch
        c.train.update(dict(steps=3, log_every=1, **overrides))
        c.mesh = {"data": 2, "fsdp": 1, "expert": 1, "tensor": 1}
        return c

    train.train(dense(), str(tmp_path / "full"))
    train.train(dense(grad_accum_steps=2), str(tmp_path / "accum"))
    a, b = losses(tmp_path / "full"), losses(tmp_path / "accum")
    np.testing.assert_allclose([a[s] for s in sorted(a)], [b[s] for s in sorted(a)], rtol=1e-5)
    with pytest.raises(configlib.ConfigError, match="grad_accum_steps = 3"):
        train.train(dense(grad_accum_steps=3), str(tmp_path / "bad"))


def test_batch_split_is_checked_when_resolving_for_training_only():
    """A batch the mesh cannot split is refused by `resolve`, before any workdir is touched; an
    evaluation of the same config (restored onto whatever devices are present) is not."""
    c = quickstart.get_config("runlocal")
    c.mesh = {"data": 8, "fsdp": 1, "expert": 1, "tensor": 1}
    c.train.batch_size = 12
    with pytest.raises(configlib.ConfigError, match=r"train.batch_size = 12 must split .* size 8"):
        train.resolve(c)
    c.mesh = {"data": 16, "fsdp": 1, "expert": 1, "tensor": 1}  # more devices than this machine has
    with pytest.raises(configlib.ConfigError, match="mesh"):
        train.resolve(c)
    assert train.resolve(c, for_training=False).batch_size == 12
