"""Evaluates a checkpoint of a run: held-out loss and bits-per-byte per domain.

python -m experiments.eval --workdir runs/quickstart [--step N]
"""

from absl import flags

from mixlab import cli
from mixlab.evals import run

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir holding config.json and checkpoints/.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
flags.mark_flags_as_required(["workdir"])


def main() -> None:
    path, results = run.evaluate_checkpoint(_WORKDIR.value, _STEP.value)
    for domain, r in results.items():
        print(f"{domain:>12}: loss {r['loss']:.4f}  bpb {r['bpb']:.4f}  ({r['tokens']} tokens)")
    print(f"eval: {path}")


if __name__ == "__main__":
    cli.run(main)
