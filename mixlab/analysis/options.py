"""What a routing analysis is asked (`Options`) and what it holds per run while it works (`RunRouting`).

Its own module so that `analyse.py` (which computes) and `export.py` (which writes) both import it,
neither the other.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mixlab.analysis.trace import Trace


@dataclasses.dataclass(frozen=True)
class Options:
    step: int | None = None  # None: the latest checkpoint (unless all_steps)
    all_steps: bool = False  # every checkpoint: the saturation series
    tokens_per_domain: int = 16_384
    seed: int = 0
    mask_top: tuple[int, ...] = (1, 2)  # r of ΔL(r); () skips the redundancy test
    delta: float = 0.2  # expert-set threshold: S > (K / E)(1 + delta)
    pair: tuple[str, str] = ("code", "math")  # the domain pair of summary.md
    traces: bool = True  # False: training-time counts only
    domains: tuple[str, ...] | None = None  # None: every registry domain
    num_devices: int | None = None
    batch_size: int = 16
    plots: bool = True


@dataclasses.dataclass
class RunRouting:
    name: str
    workdir: str
    info: dict
    traces: dict[int, Trace] = dataclasses.field(default_factory=dict)
    collected: dict[int, dict] = dataclasses.field(default_factory=dict)
    metrics: dict[int, dict] = dataclasses.field(default_factory=dict)
    saturation: dict[int, dict] = dataclasses.field(default_factory=dict)
    nll: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)  # per-token, aligned with traces
    train: dict | None = None
