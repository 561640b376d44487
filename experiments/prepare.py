"""Pre-tokenizes a config's domains (built-in or data.mixture_file) into ArrayRecord shards.

  python -m experiments.prepare --config configs/quickstart.py:mixture=my_mixture.json --out data/mine
  python -m experiments.prepare --config configs/quickstart.py --out data/bpe4k \\
      --train_tokenizer bpe --vocab_size 4096

Writes OUT/{index.json, tokenizer.json, mixture.json, <domain>/<split>-*.arrayrecord} (mixlab/data/
prepare.py) and prints the flags that train from them.
"""

from absl import flags
from ml_collections import config_flags

from mixlab import cli, configlib
from mixlab.data import prepare

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:args].", lock_config=True)
_OUT = flags.DEFINE_string("out", None, "New or empty output directory.")
_TRAIN_TOKENIZER = flags.DEFINE_enum(
    "train_tokenizer", "", ["", "bpe"], "Train a tokenizer on the domains ('' uses data.tokenizer)."
)
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 4096, "Vocabulary of the trained tokenizer.")
_SAMPLE_MB = flags.DEFINE_float(
    "sample_mb", 8.0, "MB of text the tokenizer trains on, split evenly by domain."
)
flags.mark_flags_as_required(["config", "out"])
cli.directory_flags("out")


def main() -> None:
    out = _OUT.value
    with configlib.errors_as_config_errors():
        index = prepare.prepare(
            _CONFIG.value,
            out,
            train_tokenizer=_TRAIN_TOKENIZER.value,
            vocab_size=_VOCAB_SIZE.value,
            sample_bytes=int(_SAMPLE_MB.value * 2**20),
        )
    for name, d in index["domains"].items():
        sizes = "  ".join(
            f"{s}: {v['documents']:,} docs {v['tokens']:,} tokens" for s, v in d["splits"].items()
        )
        print(f"{name:>14}  {sizes}")
    tok = index["tokenizer"]
    spec = "bytes" if tok["name"] == "bytes" else f"bpe:{out}/tokenizer.json"
    print(f"tokenizer {tok['name']} (vocab {tok['vocab_size']}); wrote {out}/index.json")
    print(f"train with: --config configs/quickstart.py:mixture={out}/mixture.json")
    print(f"            --config.data.tokenizer={spec}")


if __name__ == "__main__":
    cli.run(main)
