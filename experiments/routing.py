"""Routing analysis of one or more runs (arms): traces, specialisation, saturation, cross-arm JSD.

python -m experiments.routing --workdirs runs/full runs/wo_code [--reference runs/full] \
    [--step S | --all_steps] [--tokens_per_domain 16384] --out runs/routing

Writes OUT/<run>/traces_step_<S>.npz (reused when present), OUT/routing.json, OUT/summary.md and
OUT/plots/*.png; see mixlab/analysis/README.md for every metric.
"""

import sys

from absl import flags

from mixlab import cli, configlib
from mixlab.analysis import analyse, options

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Training workdirs (one per arm), comma- or space-separated.")
_OUT = flags.DEFINE_string("out", None, "Output folder (traces, routing.json, summary.md, plots/).")
_REFERENCE = flags.DEFINE_string("reference", None, "Reference arm's workdir (default: the first).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_ALL_STEPS = flags.DEFINE_bool("all_steps", False, "Every checkpoint: router saturation over the series.")
_TOKENS = flags.DEFINE_integer("tokens_per_domain", 16_384, "Sampled eval tokens per domain.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the token sample (the same sample for every arm).")
_MASK_TOP = flags.DEFINE_list("mask_top", ["1", "2"], "r values of the redundancy test ΔL(r); '' skips it.")
_DELTA = flags.DEFINE_float("delta", 0.2, "Expert-set threshold: S_l(d,e) > (k/N)(1 + delta).")
_PAIR = flags.DEFINE_list("pair", ["code", "math"], "The two domains of summary.md's headline columns.")
_TRACES = flags.DEFINE_bool("traces", True, "--notraces: analyse routing_train_counts.json only.")
_PLOTS = flags.DEFINE_bool("plots", True, "Write PNG plots.")
flags.mark_flags_as_required(["workdirs", "out"])
cli.directory_flags("workdirs", must_exist=True)
cli.directory_flags("out")


def main() -> None:
    if _STEP.value is not None and _ALL_STEPS.value:
        raise configlib.ConfigError("give --step or --all_steps, not both")
    if len(_PAIR.value) != 2:
        raise configlib.ConfigError(f"--pair needs two domains, got {_PAIR.value}")
    opts = options.Options(
        step=_STEP.value,
        all_steps=_ALL_STEPS.value,
        tokens_per_domain=_TOKENS.value,
        seed=_SEED.value,
        mask_top=tuple(int(r) for r in _MASK_TOP.value if r),
        delta=_DELTA.value,
        pair=tuple(_PAIR.value),
        traces=_TRACES.value,
        plots=_PLOTS.value,
    )
    result = analyse.analyse(_WORKDIRS.value, _OUT.value, _REFERENCE.value, opts)
    print(f"routing: {_OUT.value}/routing.json, summary.md, plots/ ({len(result['warnings'])} warnings)")


if __name__ == "__main__":
    sys.argv = analyse.join_list_flag(sys.argv, "--workdirs")  # `--workdirs A B C` as well as `A,B,C`
    cli.run(main)
