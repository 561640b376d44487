"""Bad input in a mixture file or its sources: a one-line error naming the file, the key and the value."""

import json
import os
import subprocess
import sys

import pytest

from configs import quickstart
from mixlab import configlib, train
from tests.data import user_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROSE = {"weight": 1, "sources": [{"kind": "jsonl", "path": "prose/*.jsonl"}]}


def _spec(**prose):
    return {"domains": {"prose": {**PROSE, **prose}}}


def _source(**keys):
    return _spec(sources=[{"kind": "jsonl", "path": "bad/*.jsonl", **keys}])


# (mixture file contents: a dict, or raw text; {file: contents} to write; what the message must say)
CASES = {
    "glob matches nothing": (
        _spec(sources=[{"kind": "jsonl", "path": "nope/*.jsonl"}]),
        {},
        "domains.prose.sources[0]: path '{root}/nope/*.jsonl' matches no files",
    ),
    "empty source": (_source(), {"bad/a.jsonl": "\n\n"}, "bad/*.jsonl' has no documents (1 files"),
    "jsonl line without the field": (
        _source(),
        {"bad/a.jsonl": '{"text": "ok"}\n{"body": "x", "id": 3}\n'},
        "domains.prose.sources[0]: {root}/bad/a.jsonl:2: no field 'text' (keys: body, id)",
    ),
    "jsonl field not text": (
        _source(field="n"),
        {"bad/a.jsonl": '{"n": 5}\n'},
        "bad/a.jsonl:1: field 'n' is a int, not a string",
    ),
    "jsonl line not JSON": (_source(), {"bad/a.jsonl": '{"text": "a"\n'}, "bad/a.jsonl:1: not valid JSON"),
    "domain defined twice": (
        f'{{"domains": {{"prose": {json.dumps(PROSE)}, "prose": {json.dumps(PROSE)}}}}}',
        {},
        "mixture file {root}/mixture.json: domain 'prose' is defined twice",
    ),
    "not JSON": ('{"domains": {\n  "prose": {"weight": 1,}\n}}', {}, "is not valid JSON: line 2 column 25"),
    "unknown kind": (
        _spec(sources=[{"kind": "csv", "path": "x"}]),
        {},
        "domains.prose.sources[0].kind = 'csv': unknown kind (known: jsonl, text, parquet, arrayrecord)",
    ),
    "negative weight": (_spec(weight=-1), {}, "mixture.json: domains.prose.weight = -1 is negative"),
    "weights sum to zero": (_spec(weight=0), {}, "weights sum to 0"),
    "misspelt key": (_spec(wieght=1), {}, "domains.prose: unknown key 'wieght' (known: weight, sources"),
    "field on a text source": (
        _spec(sources=[{"kind": "text", "path": "x", "field": "body"}]),
        {},
        "sources[0].field: only jsonl and parquet sources have a field",
    ),
    "bad domain name": (
        {"domains": {"a:b": PROSE}},
        {},
        "domain name 'a:b' must be letters, digits",
    ),
    "bad split": (_spec(sources=[{"kind": "jsonl", "path": "x", "split": "test"}]), {}, ".split = 'test'"),
    "no domains": ({"domains": {}}, {}, "domains is empty"),
}


def _write(root, contents, files):
    user_corpus.write(root, parquet=False)
    for name, text in files.items():
        os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    path = os.path.join(root, "mixture.json")
    with open(path, "w") as f:
        f.write(contents if isinstance(contents, str) else json.dumps(contents))
    return path


def _resolve_error(config):
    with pytest.raises(configlib.ConfigError) as e:
        train.resolve(config)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("case", CASES)
def test_bad_mixture_file_names_the_culprit(tmp_path, case):
    contents, files, message = CASES[case]
    path = _write(tmp_path, contents, files)
    assert message.format(root=tmp_path) in _resolve_error(quickstart.get_config(f"runlocal,mixture={path}"))


@pytest.mark.skipif(not user_corpus.has_pyarrow(), reason="pyarrow not installed: no parquet")
def test_parquet_without_the_column(tmp_path):
    path = user_corpus.write(tmp_path, parquet=True)
    with open(path) as f:
        spec = json.load(f)
    spec["domains"]["tables"]["sources"][0]["field"] = "text"
    with open(path, "w") as f:
        json.dump(spec, f)
    message = _resolve_error(quickstart.get_config(f"runlocal,mixture={path}"))
    assert (
        f"domains.tables.sources[0]: {tmp_path}/tables.parquet: no column 'text' (columns: content)"
        in message
    )


def test_config_keys_name_the_culprit(tmp_path):
    c = quickstart.get_config("runlocal")
    c.data.mixture_file = str(tmp_path / "missing.json")
    assert f"data.mixture_file = '{tmp_path}/missing.json': file not found" in _resolve_error(c)
    c.data.mixture_file = user_corpus.write(tmp_path, parquet=False)  # the built-in weights left set
    message = _resolve_error(c)  # 'code' is a domain of the file too
    assert (
        "data.weights names 'code_math', 'code_text', 'math', 'math_traces', 'text', not a domain" in message
    )
    c = quickstart.get_config("runlocal")
    c.data.tokenizer = "wordpiece"
    assert "data.tokenizer = 'wordpiece': expected 'bytes' or 'bpe:PATH'" in _resolve_error(c)
    c.data.tokenizer = f"bpe:{tmp_path}/nope.json"
    assert f"tokenizer file {tmp_path}/nope.json not found" in _resolve_error(c)


def test_prepare_cli_error_is_one_line(tmp_path):
    path = _write(tmp_path, _spec(weight=-1), {})
    command = [
        sys.executable,
        "-m",
        "experiments.prepare",
        "--config",
        f"configs/quickstart.py:mixture={path}",
    ]
    proc = subprocess.run(
        [*command, "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: mixture file") and "weight = -1" in lines[0], (
        proc.stderr
    )
