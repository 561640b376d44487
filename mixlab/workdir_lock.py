"""One trainer per workdir: an exclusive `fcntl.flock` on `WORKDIR/train.lock`, held for the whole run.

The kernel drops a flock when the process holding it exits, however it exits (`kill -9`, OOM, a node
crash that takes the process along), so a lock file left behind never blocks the next start: only a live
holder does. The file records the holder's pid, host and start time for the message a second trainer
prints (exit 2).

What holds where:
- Local disks, and NFS from Linux clients (since 2.6.12 flock is emulated with whole-file POSIX locks,
  which the NFS lock manager sees from every host): a second trainer anywhere is refused.
- Lustre needs the `flock` mount option; gcsfuse and most FUSE object-store mounts keep locks on the
  host that took them: two jobs on different hosts are not detected there (on one host they are).
  A filesystem without lock support (ENOLCK, EOPNOTSUPP) gets a warning and no lock.
- Several processes (multi-host): process 0 alone takes the lock, so the job's own processes never
  contend; the result is broadcast so that every process stops with the same error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from mixlab import configlib
from mixlab.metric_writer import logger

LOCK_FILE = "train.lock"


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError):
        return "a process that has not written its pid yet"


def _acquire(path: str) -> int | None:
    """The locked file descriptor; None where the filesystem cannot lock. Raises ConfigError if held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        workdir = os.path.dirname(path)
        raise configlib.ConfigError(
            f"workdir {workdir} is in use by another trainer ({holder}; lock {path}); wait for it to "
            "finish, stop it, or use another --workdir"
        ) from None
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            logger.warning("%s: this filesystem cannot lock (%s); not guarding the workdir", path, e.strerror)
            return None
        raise
    os.ftruncate(fd, 0)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return fd


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
    """Holds the workdir's lock for the `with` block; a ConfigError naming the holder if it is taken."""
    path = os.path.join(workdir, LOCK_FILE)
    fd, error = None, None
    if jax.process_index() == 0:
        try:
            fd = _acquire(path)
        except configlib.ConfigError as e:
            error = e
    if jax.process_count() > 1:  # every process must stop, not only the one that saw the lock taken
        taken = int(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
        if taken and error is None:
            error = configlib.ConfigError(f"workdir {workdir} is in use by another trainer (see process 0)")
    if error is not None:
        raise error
    try:
        yield
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
