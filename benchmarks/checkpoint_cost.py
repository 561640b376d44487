"""Cost of asynchronous checkpointing: steady-state step time with a save every N steps vs no saves.

  python benchmarks/checkpoint_cost.py [--size micro] [--steps 60] [--every 10]

Both runs use the real training loop (`mixlab.train.train`) on the quickstart config in one process;
step time is read from the loop's own `perf/steps_per_s` over the logged intervals after the first
(which includes compilation). Goal: saving every N steps costs under 5%. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np

from configs import quickstart
from mixlab import train


def steady_step_s(workdir: str) -> float:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    rates = [r["perf/steps_per_s"] for r in rows[1:]]  # the first interval includes compilation
    return float(np.median([1.0 / r for r in rates]))


def run(size: str, steps: int, every: int, log_every: int) -> float:
    c = quickstart.get_config(f"size={size}")
    c.train.steps = steps
    c.train.log_every = log_every
    c.checkpoint.every = every
    c.checkpoint.keep = 2
    with tempfile.TemporaryDirectory() as workdir:
        train.train(c, workdir)
        return steady_step_s(workdir)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="micro")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--every", type=int, default=10)
    args = p.parse_args()
    # The same log interval as the save interval: each measured interval holds exactly one save.
    base = run(args.size, args.steps, args.steps + 1, args.every)
    saving = run(args.size, args.steps, args.every, args.every)
    result = {
        "size": args.size,
        "save_every_steps": args.every,
        "step_s_no_saves": base,
        "step_s_with_saves": saving,
        "overhead": saving / base - 1.0,
    }
    print(
        f"step {base * 1e3:.1f} ms without saves, {saving * 1e3:.1f} ms saving every {args.every} steps "
        f"({result['overhead']:+.1%})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
