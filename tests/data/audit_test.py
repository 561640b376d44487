"""The mixture audit: every number in data_audit.json equals an independent recomputation."""

import itertools
import json
import os
import subprocess
import sys
import textwrap

import ml_collections
import numpy as np
import pytest

from mixlab.data import DOMAINS, audit, load_documents, make_train_dataset, packing

SEQ_LEN, BATCH, STEPS, N = 32, 8, 500, 1200


def _cfg(arm):
    return ml_collections.ConfigDict(
        {"weights": {"text": 0.5, "code": 0.3, "math": 0.2}, "seq_len": SEQ_LEN, "arm": arm}
    )


@pytest.mark.parametrize(
    "arm, weights, scale",
    [
        ("remove:code:fill:text", {"text": 0.8, "math": 0.2}, 1.0),
        ("remove:code", {"text": 0.5 / 0.7, "math": 0.2 / 0.7}, 1.0),
        ("remove:code:hold", {"text": 0.5 / 0.7, "math": 0.2 / 0.7}, 0.7),
    ],
)
def test_audit_numbers_equal_a_recomputation(arm, weights, scale):
    report = audit.audit(_cfg(arm), steps=STEPS, batch_size=BATCH, seed=7, sequences=N)
    run_steps = round(STEPS * scale)
    base = {"text": 0.5, "code": 0.3, "math": 0.2}
    ds = make_train_dataset(_cfg(arm), batch_size=BATCH, seed=7, shard_index=0, shard_count=1)
    ids = np.concatenate([b["domain"][:, 0] for b in itertools.islice(ds, N // BATCH)])
    assert report["arm"] == (arm if arm.count(":") > 1 else arm + ":proportional")
    assert (report["run_steps"], report["base_steps"], report["sequences"]) == (run_steps, STEPS, N)
    assert report["run_tokens"] == run_steps * BATCH * SEQ_LEN
    assert report["budget_scale"] == pytest.approx(scale)
    assert list(report["domains"]) == list(DOMAINS)
    for i, name in enumerate(DOMAINS):
        d, w = report["domains"][name], weights.get(name, 0.0)
        assert d["id"] == i
        assert d["requested_share"] == pytest.approx(w)
        assert d["realised_share"] == pytest.approx(np.mean(ids == i))
        assert d["tokens_run_requested"] == pytest.approx(run_steps * BATCH * SEQ_LEN * w)
        assert d["tokens_run_base"] == pytest.approx(STEPS * BATCH * SEQ_LEN * base.get(name, 0.0))
        assert d["tokens_run_delta"] == pytest.approx(d["tokens_run_requested"] - d["tokens_run_base"])
        assert d["tokens_sample_requested"] == pytest.approx(N * SEQ_LEN * w)
        assert d["tokens_sample_realised"] == np.sum(ids == i) * SEQ_LEN
        if w:
            available = sum(len(packing.tokenize(doc)) for doc in load_documents(name, "train"))
            assert d["available_tokens"] == available
            assert d["epochs"] == pytest.approx(run_steps * BATCH * w * (SEQ_LEN + 1) / available)
        else:
            assert d["available_tokens"] is None and d["epochs"] == 0.0
    if scale < 1:  # hold: the other domains keep their base tokens (to the step's rounding)
        for name in ("text", "math"):
            assert report["domains"][name]["tokens_run_delta"] == pytest.approx(0, abs=BATCH * SEQ_LEN)
    else:  # the confound made visible: proportional adds math tokens, fill does not
        assert (report["domains"]["math"]["tokens_run_delta"] > 0) == (arm == "remove:code")
    assert report["max_window_error_pp"] < 0.5
    assert "worst 1000-window error" in audit.format_table(report)


def test_audit_reports_a_domain_past_its_epochs():
    cfg = _cfg("")
    cfg.allow_repeat = True
    report = audit.audit(cfg, steps=10**5, batch_size=BATCH, seed=0, sequences=16)
    assert report["over_max_epochs"] == ["code", "math", "text"] and report["max_window_error_pp"] is None
    with pytest.raises(ValueError, match=r"over data\.max_epochs = 1"):
        audit.audit(_cfg(""), steps=10**5, batch_size=BATCH, seed=0, sequences=16, check_repeat=True)


def test_cli_writes_the_json_and_prints_the_table(tmp_path):
    config = tmp_path / "arm.py"
    config.write_text(
        textwrap.dedent(
            """
            from configs import quickstart

            def get_config(arg=None):
                c = quickstart.get_config("runlocal")
                c.data.weights = {"code": 0.6, "code_text": 0.4}
                c.data.arm = "remove:code_text:fill:code"
                return c
            """
        )
    )
    cmd = [
        sys.executable,
        "-m",
        "experiments.data",
        f"--config={config}",
        f"--workdir={tmp_path}",
        "--sequences=64",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=os.getcwd()).stdout
    report = json.loads((tmp_path / "data_audit.json").read_text())
    assert report["arm"] == "remove:code_text:fill:code" and report["sequences"] == 64
    assert report["domains"]["code"]["realised_share"] == 1.0
    assert "arm remove:code_text:fill:code" in out and out.splitlines()[1].startswith("text ")
