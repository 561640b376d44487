"""Metric writing (TensorBoard events + `metrics.jsonl`) and a progress line with steps/s and ETA.

clu's `metric_writers` would be the first choice, but clu 0.0.12 imports TensorFlow at import time, which
this project does not depend on; tensorboardX writes the same event files without it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Mapping

import numpy as np
from absl import logging as absl_logging

logger = logging.getLogger("mixlab")


def setup_logging() -> None:
    """mixlab's own messages at INFO on stderr; libraries (Orbax logs every save at INFO) at WARNING."""
    absl_logging.set_verbosity(absl_logging.WARNING)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def truncate_jsonl(path: str, last_step: int) -> int:
    """Drops the rows of `path` past `last_step` (and a torn last line), atomically; returns how many.

    A resumed run repeats the steps after its checkpoint: their old rows must go, or the file would
    hold two histories of those steps."""
    if not os.path.exists(path):
        return 0
    kept, dropped = [], 0
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
                keep = int(row["step"]) <= last_step
            except (ValueError, KeyError, TypeError):
                keep = False
            if keep:
                kept.append(line if line.endswith("\n") else line + "\n")
            else:
                dropped += 1
    if dropped:
        with open(path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)
    return dropped


class MetricWriter:
    """Writes scalars to TensorBoard and one JSON object per call to `metrics.jsonl` (on process 0).

    `resume_step`: the step training continues after; rows past it are removed first, and TensorBoard
    is told to discard its events past it (`purge_step`)."""

    def __init__(self, workdir: str, *, enabled: bool = True, resume_step: int = 0):
        self.enabled = enabled
        self._tb = None
        self._jsonl = None
        if enabled:
            from tensorboardX import SummaryWriter

            path = os.path.join(workdir, "metrics.jsonl")
            truncate_jsonl(path, resume_step)
            self._tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=resume_step + 1)
            self._jsonl = open(path, "a")  # noqa: SIM115

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in scalars.items() if np.ndim(v) == 0}
        for key, value in clean.items():
            self._tb.add_scalar(key, value, step)
        self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


@functools.cache
def matmul_peak_flops(dtype: str = "float32", n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of a large square matmul on the default device: the denominator of MFU, measured in the
    same process (on a shared CPU the attainable peak drifts by 20% within an hour), once (~1 s)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """Steps/s, tokens/s and ETA measured between reports (the first report includes compilation)."""

    def __init__(self, total_steps: int, tokens_per_step: int, start_step: int):
        self.total_steps = total_steps
        self.tokens_per_step = tokens_per_step
        self._last_step = start_step
        self._last_time = time.perf_counter()

    def update(self, step: int) -> dict[str, float]:
        now = time.perf_counter()
        steps_per_s = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        return {
            "perf/steps_per_s": steps_per_s,
            "perf/tokens_per_s": steps_per_s * self.tokens_per_step,
            "perf/eta_s": (self.total_steps - step) / max(steps_per_s, 1e-9),
        }

    def line(self, step: int, loss: float, perf: Mapping[str, float]) -> str:
        return (
            f"step {step}/{self.total_steps} | loss {loss:.4f} | "
            f"{perf['perf/steps_per_s']:.2f} steps/s | {perf['perf/tokens_per_s']:,.0f} tok/s | "
            f"ETA {format_duration(perf['perf/eta_s'])}"
        )
