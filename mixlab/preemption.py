"""Stop requests from the scheduler: SIGTERM (preemption, `scancel`, TPU maintenance) or SIGINT (Ctrl-C).

The loop asks `should_stop(step)` after dispatching each step; when it says yes, the current step is
finished, checkpointed, and the process exits cleanly so the next start resumes there. With several
processes every process must stop at the same step, so the decision goes through JAX's preemption sync
point (the coordination service of `jax.distributed`), which also catches SIGTERM itself.
"""

from __future__ import annotations

import signal

import jax
from jax.experimental import multihost_utils


class StopRequest:
    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        # Several processes: only the sync point decides (a signal seen by one process alone would make
        # them stop at different steps and hang the next collective); JAX handles SIGTERM there.
        if jax.process_count() == 1:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C aborts without waiting for the save
        self.signal_name = signal.Signals(signum).name

    def should_stop(self, step: int) -> bool:
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.signal_name is not None
