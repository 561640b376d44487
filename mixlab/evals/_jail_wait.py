"""Supervision in the sandbox launcher (`_jail.py`): waiting for the program, the memory watchdog, and
killing and reaping whatever it left. Standard library only; imported by `_jail.py`, never by mixlab.
"""

import contextlib
import os
import signal
import time


def rss_mb() -> float:
    """Proportional resident memory of every process in this PID namespace but the init (pid 1)."""
    total = 0
    for name in os.listdir("/proc"):
        if name.isdigit() and name != "1":
            try:
                with open(f"/proc/{name}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
                            break
            except OSError:
                pass  # exited meanwhile, or a kernel thread
    return total / 1024


def supervise(pid: int, deadline: float, watch_mb: float | None, init: bool) -> dict:
    """Waits for `pid` (reaping every other child meanwhile), kills what is left; its exit record."""
    start, delay = time.monotonic(), 0.001
    status = usage = None
    timed_out = memory_killed = False
    peak = 0.0
    while status is None:
        done, st, ru = os.wait4(-1, os.WNOHANG)
        if done == pid:
            status, usage = st, ru
            continue
        if done:
            continue  # an orphan reparented to us
        if watch_mb is not None:
            peak = max(peak, rss_mb())
            if peak > watch_mb:
                memory_killed = True
                break
        if time.monotonic() >= deadline:
            timed_out = True
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.01 if watch_mb is not None else 0.02)
    leftover = kill_all(pid, init)
    if status is None:
        _, status, usage = os.wait4(pid, 0)
    reap(init)
    return {
        "timed_out": timed_out,
        "memory_killed": memory_killed,
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "elapsed_s": time.monotonic() - start,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "leftover_processes": leftover,
        "memory_peak_mb": peak if watch_mb is not None else None,
    }


def kill_all(pid: int, init: bool) -> bool:
    """SIGKILLs everything the program left; True if anything but its zombie was still there.

    From pid 1, kill(-1) reaches every process of the namespace but the caller, and one call suffices:
    it runs under the lock fork takes to add a child, so a child forked meanwhile is either reached or
    never born (its parent already holds SIGKILL). Without a namespace: the process group, then every
    descendant of this (subreaper) process, setsid or not."""
    try:
        if init:
            os.kill(-1, signal.SIGKILL)
            return True
        os.killpg(pid, signal.SIGKILL)
        found = True
    except (ProcessLookupError, PermissionError):
        found = False
    return _kill_descendants() or found


def _kill_descendants() -> bool:
    """SIGKILLs every live descendant of this process, in rounds until none is left. We are a child
    subreaper, so orphans are reparented to us and the tree stays whole; a child forked during a round
    has a parent in it and is found by the next (and a killed parent forks no more)."""
    me, any_found = os.getpid(), False
    for _ in range(1000):
        parent, live = {}, set()
        for name in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue  # exited meanwhile
            parent[int(name)] = int(fields[1])
            if fields[0] != "Z":
                live.add(int(name))
        mine = [p for p in live if _descends(p, me, parent)]
        if not mine:
            return any_found
        any_found = True
        for p in mine:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        reap(False)
        time.sleep(0.001)
    return any_found


def _descends(pid: int, ancestor: int, parent: dict[int, int]) -> bool:
    for _ in range(len(parent)):
        pid = parent.get(pid, 0)
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


def reap(block: bool) -> None:
    """Reaps every child; blocking only in the init, whose children all hold a SIGKILL by now."""
    while True:
        try:
            if os.waitpid(-1, 0 if block else os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            if not block or not kill_all(0, True):
                return  # nothing left; the kill is a last check against a child we did not see


def kill_uid(uid: int) -> bool:
    """SIGKILLs every process of `uid` from a helper that becomes `uid`; True if any was running."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setuid(uid)
            for _ in range(1000):
                os.kill(-1, signal.SIGKILL)  # all this uid may signal, but this process
                code = 1
                time.sleep(0.001)
        except ProcessLookupError:
            pass
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 1
