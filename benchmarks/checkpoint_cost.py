"""Cost of asynchronous checkpointing: steady-state step time with a save every N steps vs without.

  python benchmarks/checkpoint_cost.py [--size micro] [--steps 60] [--every 10]

One run of the real training loop (`mixlab.train.train`, quickstart config) logs every step's time; the
baseline is the median time of the steps whose interval holds no save (neither the save step nor the one
after it), the cost is the mean over all steady-state steps. Measured within one run because on a shared
machine two runs a minute apart differ by more than the effect. Goal: under 5%. `--smoke` (the runlocal
nano model, 8 steps, a save every 4) only checks that it runs. Last line: one JSON object (keys:
benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np

from configs import quickstart
from mixlab import train


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="micro")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--smoke", action="store_true", help="runlocal nano model, 8 steps, save every 4")
    args = p.parse_args()
    if args.smoke:  # steady steps 3..8: saves at 4 and 8, steps 3, 6, 7 make the baseline
        args.size, args.steps, args.every = "nano", 8, 4
    c = quickstart.get_config("runlocal" if args.smoke else f"size={args.size}")
    c.train.steps, c.train.log_every = args.steps, 1
    c.checkpoint.every, c.checkpoint.keep = args.every, 2
    with tempfile.TemporaryDirectory() as workdir:
        train.train(c, workdir)
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            step_s = {r["step"]: 1.0 / r["perf/steps_per_s"] for r in map(json.loads, f)}
    steady = {s: t for s, t in step_s.items() if s > 2}  # steps 1-2 include compilation
    near_save = {s for s in steady if s % args.every in (0, 1)}
    baseline = float(np.median([t for s, t in steady.items() if s not in near_save]))
    with_saves = float(np.mean(list(steady.values())))
    result = {
        "size": args.size,
        "steps": args.steps,
        "save_every_steps": args.every,
        "step_s_without_saves": baseline,
        "step_s_with_saves": with_saves,
        "overhead": with_saves / baseline - 1.0,
        "goal": 0.05,
    }
    print(
        f"step {baseline * 1e3:.1f} ms without saves, {with_saves * 1e3:.1f} ms with a save every "
        f"{args.every} steps ({result['overhead']:+.1%})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
