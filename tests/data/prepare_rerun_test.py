"""An interrupted `experiments.prepare` leaves no half-written --out, and its rerun succeeds (issue 13)."""

import os

import pytest

from configs import quickstart
from mixlab.data import prepare, shards
from tests.data import user_corpus


def test_interrupted_prepare_leaves_no_out_and_reruns_cleanly(tmp_path, monkeypatch):
    config = quickstart.get_config(
        f"runlocal,mixture={user_corpus.write(tmp_path / 'corpus', parquet=False)}"
    )
    out = str(tmp_path / "prepared")
    real, calls = shards.write_split, []

    def interrupted(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:  # the first split is written, then the user presses Ctrl-C
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(shards, "write_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare(config, out)
    assert not os.path.exists(out) and os.path.exists(out + ".partial")  # --out is not blocked
    monkeypatch.setattr(shards, "write_split", real)
    index = prepare.prepare(config, out)
    assert not os.path.exists(out + ".partial") and os.path.exists(os.path.join(out, "index.json"))
    assert not os.path.exists(os.path.join(out, prepare.PARTIAL_MARK))
    assert sorted(os.listdir(out)) == sorted(
        ["index.json", "mixture.json", "tokenizer.json", *index["domains"]]
    )
    os.makedirs(str(tmp_path / "other.partial"))  # a directory of that name that prepare did not make
    with pytest.raises(ValueError, match=r"was not made by experiments\.prepare"):
        prepare.prepare(config, str(tmp_path / "other"))
