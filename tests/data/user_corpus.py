"""A small corpus of your own, written to a temporary directory: jsonl, text and (if pyarrow) parquet."""

import json
import os
import random

import ml_collections

WORDS = ["the", "a", "cat", "dog", "ran", "over", "under", "quick", "brown", "fox", "jumps", "lazy", "river"]


def write(root, *, parquet: bool = True, eval_fraction: float = 0.1) -> str:
    """Writes the sources and mixture.json under `root`; returns the mixture file's path.

    Domains in file order: prose (jsonl, two files), code (one text file per document), tables
    (parquet column `content`, only with parquet=True). Sizes leave each eval split a few KB."""
    rng = random.Random(0)
    root = str(root)
    os.makedirs(os.path.join(root, "prose"), exist_ok=True)
    os.makedirs(os.path.join(root, "code"), exist_ok=True)
    for f in range(2):
        with open(os.path.join(root, "prose", f"part{f}.jsonl"), "w") as out:
            for i in range(250):
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) + " ünïcödé ✓"
                out.write(json.dumps({"id": i, "text": text}) + "\n")
    for i in range(60):
        body = f"def f{i}(x):\n    return x * {i} + {i * i}\n" * rng.randint(1, 20)
        with open(os.path.join(root, "code", f"m{i:02d}.py"), "w") as out:
            out.write(body)
    domains = {
        "prose": {"weight": 0.5, "sources": [{"kind": "jsonl", "path": "prose/*.jsonl"}]},
        "code": {"weight": 0.3, "sources": [{"kind": "text", "path": "code/*.py"}]},
    }
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [f"{a} + {b} = {a + b}; {a} * {b} = {a * b}" for a in range(40) for b in range(25)]
        pq.write_table(pa.table({"content": rows}), os.path.join(root, "tables.parquet"))
        source = {"kind": "parquet", "path": "tables.parquet", "field": "content"}
        domains["tables"] = {"weight": 0.2, "sources": [source]}
    for d in domains.values():
        d["eval_fraction"] = eval_fraction
    path = os.path.join(root, "mixture.json")
    with open(path, "w") as out:
        json.dump({"domains": domains}, out, indent=1)
    return path


def data_cfg(mixture_file: str, seq_len: int = 32, **keys) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"weights": {}, "seq_len": seq_len, "mixture_file": mixture_file, "tokenizer": "bytes", **keys}
    )


def has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True
