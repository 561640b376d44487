"""A run is never silently thrown away: resume refusals, corruption vs mismatch, the lock, metrics rows,
a full disk and a double SIGTERM (issue 13)."""

import errno
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from mixlab import checkpoint, configlib, metric_writer, run_identity, train, workdir_lock
from mixlab.evals import run as eval_run
from tests.data import user_corpus
from tests.train_test import ROOT, config

SCHEDULE_A = {"text": 0.5, "code": 0.5}
SCHEDULE_B = {"text": 0.2, "math": 0.8}


def steps_logged(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line)["step"] for line in f]


def checkpoints(workdir):
    return sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")))


def scheduled(*stages, **train_overrides):
    c = config(**train_overrides)
    c.data.weights = {}
    c.data.schedule = list(stages)
    return c


@pytest.mark.slow
def test_schedule_of_trained_steps_is_refused_a_later_stage_is_not(tmp_path):
    workdir = str(tmp_path)
    train.train(scheduled((0, SCHEDULE_A), halt_at_step=3), workdir)  # checkpoint at 3
    with pytest.raises(configlib.ConfigError) as e:
        train.train(scheduled((0, SCHEDULE_B)), workdir)
    message = str(e.value)
    assert "data.schedule" in message and "steps 0..3, already trained" in message, message
    assert checkpoints(workdir) == [3] and not os.path.exists(tmp_path / "checkpoints_unreadable")
    train.train(scheduled((0, SCHEDULE_A), (4, SCHEDULE_B)), workdir)  # a new stage after step 3: resumes
    assert checkpoints(workdir) == [3, 6] and steps_logged(workdir) == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_mixture_file_contents_and_source_files_changed_are_refused(tmp_path):
    path = user_corpus.write(tmp_path / "corpus", parquet=False)
    c = config(steps=1)
    c.data.weights, c.data.mixture_file = {}, path
    workdir = str(tmp_path / "run")
    train.train(c, workdir)
    with open(path) as f:
        original = f.read()
    with open(path, "w") as f:  # same path, other contents: the weights of the trained step change
        f.write(original.replace('"weight": 0.5', '"weight": 0.6'))
    with pytest.raises(configlib.ConfigError, match=r"data\.mixture_file contents .* sha256 \w+ -> \w+"):
        train.train(_with(c, steps=2), workdir)
    with open(path, "w") as f:
        f.write(original)
    for name in glob.glob(str(tmp_path / "corpus" / "code" / "*.py")):  # sources edited in place
        with open(name, "a") as f:
            f.write("def extra():\n    return 1\n")
    with pytest.raises(configlib.ConfigError) as e:
        train.train(_with(c, steps=2), workdir)
    assert "files of mixture file" in str(e.value) and "domains.code.sources[0]" in str(e.value), e.value
    assert "train data of domain 'code'" in str(e.value)  # its token lengths changed too
    assert checkpoints(workdir) == [1] and not os.path.exists(tmp_path / "run" / "checkpoints_unreadable")


def _with(c, **train_overrides):
    c = c.copy_and_resolve_references()
    c.train.update(train_overrides)
    return c


@pytest.mark.slow
def test_truncated_array_file_is_moved_aside_and_metrics_rows_replaced(tmp_path):
    workdir = str(tmp_path)
    train.train(config(), workdir)  # checkpoints at 3 and 6, rows 1..6
    biggest = max(glob.glob(f"{workdir}/checkpoints/6/state/ocdbt.process_*/d/*"), key=os.path.getsize)
    os.truncate(biggest, os.path.getsize(biggest) // 2)
    train.train(config(steps=7), workdir)  # falls back to 3: steps 4..6 trained again, then 7
    assert checkpoints(workdir) == [3, 6, 7]
    assert [p.split("-")[0] for p in os.listdir(tmp_path / "checkpoints_unreadable")] == ["6"]
    assert steps_logged(workdir) == [1, 2, 3, 4, 5, 6, 7]  # not 1..6, 4..7


@pytest.mark.slow
def test_a_whole_checkpoint_that_does_not_fit_is_not_moved(tmp_path):
    """The second line of defence: with the identity files gone, the data iterator's own check fails
    on restore, and that is a mismatch (one line, exit 2), not corruption."""
    workdir = str(tmp_path)
    train.train(scheduled((0, SCHEDULE_A), steps=3), workdir)
    os.remove(tmp_path / run_identity.FILE)
    os.remove(tmp_path / "config.json")
    with pytest.raises(checkpoint.CheckpointMismatch, match="data iterator state at step 3"):
        train.train(scheduled((0, SCHEDULE_B), steps=4), workdir)
    assert checkpoints(workdir) == [3] and not os.path.exists(tmp_path / "checkpoints_unreadable")


def test_identity_check_names_what_changed():
    def identity(weights, schedule, stages):
        return {"config": {"data.weights": weights, "data.schedule": schedule}, "stages": stages, "data": {}}

    saved = identity({}, [[0, SCHEDULE_A]], [[0, SCHEDULE_A]])
    later = identity({}, [[0, SCHEDULE_A], [5, SCHEDULE_B]], [[0, SCHEDULE_A], [5, SCHEDULE_B]])
    # A stage that starts after the restored step changes nothing trained; at or before it, it does.
    assert run_identity._same_stages(saved["stages"], later["stages"], 4)
    assert not run_identity._same_stages(saved["stages"], later["stages"], 5)
    a = {"mixture_file": {"path": "m.json", "sha256": "a" * 64}, "domains": {}}
    b = {"mixture_file": {"path": "m.json", "sha256": "b" * 64}, "domains": {}}
    assert run_identity._data_diffs(a, b) == [
        f"data.mixture_file contents (m.json): sha256 {'a' * 12} -> {'b' * 12}"
    ]


def test_truncate_jsonl_keeps_rows_up_to_the_step_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "x": 1.0}) + "\n" for s in (5, 10, 15, 20)) + '{"step": 2')
    assert metric_writer.truncate_jsonl(str(path), 10) == 3
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [5, 10]


def test_lock_is_exclusive_and_a_stale_lock_file_does_not_block(tmp_path):
    (tmp_path / workdir_lock.LOCK_FILE).write_text('{"pid": 999999, "host": "gone", "started": "x"}')
    held = f"in use by another trainer \\(pid {os.getpid()} on host"
    # The file of a dead holder (no flock on it) is taken; a second holder is refused.
    with workdir_lock.hold(str(tmp_path)), pytest.raises(configlib.ConfigError, match=held):
        workdir_lock.hold(str(tmp_path)).__enter__()
    with workdir_lock.hold(str(tmp_path)):  # released on exit
        pass


@pytest.mark.slow
def test_full_disk_is_refused_before_the_save_and_caught_during_it(tmp_path, monkeypatch):
    c = config(steps=3)
    c.checkpoint.every = 1
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(OSError) as e:  # step 1 has nothing to compare with; step 2 would not fit
        train.train(c, str(tmp_path / "pre"))
    assert e.value.errno == errno.ENOSPC and "not enough space to save checkpoint step 2" in e.value.strerror
    assert (
        f"{tmp_path}/pre/checkpoints: 0.0 MiB free" in e.value.strerror
        and "checkpoints [1]" in e.value.strerror
    )
    assert checkpoints(tmp_path / "pre") == [1]
    monkeypatch.setattr(shutil, "disk_usage", real)
    save = checkpoint.ocp.CheckpointManager.save

    def failing_save(self, step, *args, **kwargs):
        if step == 2:
            raise ValueError(
                "RESOURCE_EXHAUSTED: Error writing \"x\": No space left on device [os_error_code='28']"
            )
        return save(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", failing_save)
    with pytest.raises(OSError) as e:
        train.train(c, str(tmp_path / "during"))
    assert e.value.errno == errno.ENOSPC and e.value.strerror.startswith("no space left on device saving")
    assert "checkpoints [1] are intact" in e.value.strerror and checkpoints(tmp_path / "during") == [1]


@pytest.mark.slow
def test_second_sigterm_waits_for_the_final_save(tmp_path):
    workdir = tmp_path / "run"
    overrides = ["--config.train.steps=400", "--config.train.log_every=1", "--config.checkpoint.every=1000"]
    overrides += [f"--config.mesh.{axis}=1" for axis in ("data", "fsdp", "expert", "tensor")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.train", "--config", "configs/quickstart.py:runlocal", *overrides]
        + ["--workdir", str(workdir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while not (workdir / "metrics.jsonl").exists() or not (workdir / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # what schedulers do
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    (saved,) = os.listdir(workdir / "checkpoints")  # one step, and no *.orbax-checkpoint-tmp left
    saved = int(saved)
    assert f"SIGTERM: saved step {saved}" in out and 0 < saved < 400
    assert eval_run.restore(str(workdir)).step == saved  # committed and readable
