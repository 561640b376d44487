"""The sweep report: runs, capability tables, loss curves, mixture audit, code-share curve, routing and
the study's claims with verdicts computed from the files.

python -m experiments.report --sweep_dir runs/study [--config configs/code_math_study.py:scale=cpu]
    [--reference full] [--confidence 0.95] [--smaller runs/study_runlocal]

Writes DIR/report.md, DIR/report.json, DIR/results.csv and DIR/figures/*.png; see mixlab/report/.
"""

from absl import flags

from mixlab import cli
from mixlab.report import build

_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "The sweep's workdir: <name>/seed_<s>/ runs, routing/.")
_CONFIG = flags.DEFINE_string(
    "config", None, "Study config FILE[:ARGS] with claims(arg); default: sweep.json."
)
_REFERENCE = flags.DEFINE_string("reference", "full", "The arm the capability table compares with.")
_CONFIDENCE = flags.DEFINE_float("confidence", 0.95, "Confidence level of every interval.")
_REPLICATES = flags.DEFINE_integer("replicates", 2000, "Bootstrap resamples (capability tables).")
_SMALLER = flags.DEFINE_multi_string("smaller", [], "A smaller-scale sweep of the study: decision accuracy.")
flags.mark_flags_as_required(["sweep_dir"])
cli.directory_flags("sweep_dir", must_exist=True)


def main() -> None:
    report = build.build(
        _SWEEP_DIR.value,
        _REFERENCE.value,
        _CONFIDENCE.value,
        _REPLICATES.value,
        _CONFIG.value,
        tuple(_SMALLER.value),
    )
    verdicts = ", ".join(f"{c['id']} {c['verdict']}" for c in report["claims"])
    print(f"report: {_SWEEP_DIR.value}/report.md, report.json, results.csv, figures/ ({verdicts})")


if __name__ == "__main__":
    cli.run(main)
