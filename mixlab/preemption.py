"""Stop requests from the scheduler: SIGTERM (preemption, `scancel`, TPU maintenance) or SIGINT (Ctrl-C).

The loop asks `should_stop(step)` after dispatching each step; when it says yes, the current step is
finished, checkpointed and committed, and the process exits cleanly so the next start resumes there.
The handlers stay installed until the last save is committed (the trainer leaves the `with` block only
then): schedulers follow SIGTERM with another within a second or two, and the default action of that
second one would kill the save half-written. So a second signal only logs that the save is still
running; a third aborts (KeyboardInterrupt) without waiting. After a stop, SIGTERM is ignored for the
rest of the process (the exit after the committed save).

With several processes every process must stop at the same step, so the decision goes through JAX's
preemption sync point (the coordination service of `jax.distributed`), which also catches SIGTERM itself.
"""

from __future__ import annotations

import signal

import jax
from jax.experimental import multihost_utils

from mixlab.metric_writer import logger


class StopRequest:
    def __init__(self):
        self.signal_name: str | None = None
        self.count = 0
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
        if self.signal_name is not None and self._previous:
            # Stopping, the checkpoint committed: the process is on its way out, and a second SIGTERM must
            # not cut that short either. Ignored, not handled: Python resets handlers (not SIG_IGN) to the
            # default while it shuts down, and the shutdown is what takes longest.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        if self.count == 1:
            self.signal_name = name
        elif self.count == 2:
            logger.warning("%s again: finishing the checkpoint, then exiting (a third signal aborts)", name)
        else:
            raise KeyboardInterrupt(f"{name} #{self.count}: aborted without waiting for the checkpoint")

    def should_stop(self, step: int) -> bool:
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.signal_name is not None
