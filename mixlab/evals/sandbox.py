"""Runs untrusted Python (model completions, task files) in a separate, confined process.

Every program gets its own process tree, started through the launcher `_jail.py`, confined by two layers.

Kernel layer (`Limits.kernel`), the same for root and for unprivileged callers wherever the kernel grants
unprivileged user namespaces (`guarantees()` says what held on this machine):
  - namespaces: user, mount, network (no interface up: nothing local or remote is reachable), IPC (SysV
    and POSIX queues die with the run), PID (a fresh /proc lists only the run's own processes; none of the
    host's can be seen or signalled) and UTS;
  - filesystem: a minimal root (`_jail_fs`): read-only /usr, libraries, the interpreter and a few /etc
    files; empty read-only /tmp, /run, /dev/shm (no host unix socket exists inside); the working
    directory a private tmpfs of `work_mb` MiB, the only writable place;
  - uid 1000 inside, mapped to a private host uid (61000-61999, one run each) for root and to the caller's
    own uid otherwise (the only one an unprivileged process may map); no capabilities, no_new_privs;
  - memory: a cgroup (v2 memory.max + memory.swap.max=0 + pids.max, else v1 memory + memsw + pids) where the
    caller may make one (root, or a delegated subtree), so memfd, shm, tmpfs and every process count
    together; without one the init polls the run's total PSS and memfd_create and SysV IPC are refused;
  - seccomp: no new namespaces, mounts, io_uring, ptrace, bpf, keyrings, userfaultfd;
  - rlimits: CPU, address space, file size (stdout and stderr too), open files, processes, no core;
  - the environment holds only PATH and LANG; `python -I -S`;
  - every process is gone when the call returns: the init is pid 1 of the PID namespace and its death
    kills the rest; the call returns within timeout_s + 2 s whatever the program forks or ignores.
In-process layer (`Limits.hooks`, an audit hook installed before the program runs): non-AF_UNIX sockets,
fork/exec/subprocess, ctypes, gc introspection and writes outside the working directory raise
PermissionError. It is best effort: pure Python can get around audit hooks, so no guarantee rests on it.

Passing (`Result.passed`) needs exit status 0 and the run's random token, which the boot code reads from
a pipe before the program starts and writes to another pipe only after the program's last statement
(`check(entry_point)` for HumanEval) returned: `raise SystemExit(0)` or `os._exit(0)` fails. The token
lives in the program's own interpreter, so a program that deliberately digs the boot code's frame out of
it could forge a pass; this stops exits and shortcuts, not an adversary aware of the harness.

Without user namespaces a root caller keeps every layer (the program then runs as the private uid); where
no namespace can be made, only the rlimits, the private uid (root) or a process-group kill, the cgroup
(root) and the audit hook remain, and `guarantees()` says so.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import functools
import itertools
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

EXIT_REASONS = ("ok", "timeout", "memory", "killed", "error")
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_JAIL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_jail.py")
# The base interpreter, not the venv's: the sandbox needs only the standard library (-S) and the venv's
# pyvenv.cfg would point the uid at site-packages it must not import.
_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
_UID_BASE, _UID_COUNT = 61_000, 1_000
_LOCK_DIR = os.path.join(tempfile.gettempdir(), "mixlab-sandbox-uids")
_GRACE_S = 1.6  # past the deadline the caller kills the launcher (its own backstop fires at +1.0 s)
_counter = itertools.count()

_HOOKS = r"""
import os, sys
def _install():
    cwd = os.getcwd() + os.sep
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    blocked = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
        "os.fork", "os.forkpty", "os.kill", "os.killpg", "ctypes.dlopen", "ctypes.dlsym", "pty.spawn",
        "gc.get_objects", "gc.get_referrers", "gc.get_referents"})
    on_paths = frozenset({"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.chmod", "os.chown",
        "os.symlink", "os.link", "os.truncate", "os.utime", "os.chflags", "os.mkfifo", "os.mknod"})
    def inside(p):
        return isinstance(p, int) or os.path.abspath(os.fsdecode(p)).startswith(cwd)
    def hook(event, args):
        if event == "socket.__new__" and args[1] != 1:  # AF_UNIX (socketpair) stays: it reaches nothing
            raise PermissionError("sandbox: no network")
        if event == "open" and args[0] is not None:
            mode, flags = args[1], args[2] or 0
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or flags & write_flags:
                if not inside(args[0]):
                    raise PermissionError(f"sandbox: no writes outside the working directory: {args[0]}")
        elif event in blocked:
            raise PermissionError(f"sandbox: {event} is not allowed")
        elif event == "object.__setattr__" and args[1] == "__code__":  # swapping the hook's own code
            raise PermissionError("sandbox: setting __code__ is not allowed")
        elif event in on_paths and not all(inside(a) for a in args[:2] if isinstance(a, (str, bytes))):
            raise PermissionError(f"sandbox: {event} outside the working directory")
    sys.addaudithook(hook)
_install()
del _install
"""
# fds 3 (the token) and 4 (where it goes) come from the launcher; nothing else is open past stderr.
_RUN = r"""
import os, sys
def _run():
    token = os.read(3, 64)
    os.close(3)
    sys.argv[:] = ["main.py"]
    with open("main.py", encoding="utf-8") as f:
        code = compile(f.read(), "main.py", "exec")
    exec(code, {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__})
    os.write(4, token)  # reached only when the last statement returned: no exception, no exit
_run()
"""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed program and the confinement layers to use."""

    timeout_s: float = 10.0  # wall clock from the call, interpreter start-up included
    cpu_s: int = 10
    memory_mb: int = 1024  # address space per process, and the cgroup's bound on all of them together
    processes: int = 64  # threads count too
    file_mb: int = 16  # largest file, stdout and stderr included
    work_mb: int = 64  # the tmpfs holding the working directory
    output_bytes: int = 1 << 20  # stdout kept in the result
    kernel: bool = True
    hooks: bool = True


DEFAULT_LIMITS = Limits()


@dataclasses.dataclass(frozen=True)
class Result:
    """`exit_reason` is one of EXIT_REASONS; `passed` means "ok": exit status 0 and `finished`."""

    exit_reason: str
    stdout: str
    stderr_tail: str
    exit_code: int | None = None
    signal: int | None = None
    elapsed_s: float = 0.0
    leftover_processes: bool = False
    isolation: dict = dataclasses.field(default_factory=dict)
    finished: bool = False  # the boot code wrote the run's token after the program's last statement
    memory_peak_mb: float | None = None  # the cgroup's (or the watchdog's) peak over all processes

    @property
    def passed(self) -> bool:
        return self.exit_reason == "ok"


@contextlib.contextmanager
def _private_uid(limits: Limits) -> Iterator[int | None]:
    """A uid no account and no other run uses, held for the duration; None when not root."""
    if not limits.kernel or os.geteuid() != 0:
        yield None
        return
    os.makedirs(_LOCK_DIR, mode=0o700, exist_ok=True)
    start = os.getpid() * 131 + next(_counter)
    for i in range(_UID_COUNT):
        uid = _UID_BASE + (start + i) % _UID_COUNT
        with contextlib.suppress(KeyError):
            pwd.getpwuid(uid)
            continue
        with open(os.path.join(_LOCK_DIR, str(uid)), "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            yield uid
            return
    raise RuntimeError(f"no free sandbox uid in {_UID_BASE}..{_UID_BASE + _UID_COUNT - 1}")


def _kill_uid(uid: int) -> None:
    """Last resort when the launcher hung outside a PID namespace: kill every process of `uid`."""
    code = "import os, time\nfor _ in range(100):\n    os.kill(-1, 9)\n    time.sleep(0.005)\n"
    subprocess.run([_PYTHON, "-I", "-S", "-c", code], user=uid, env=_ENV, timeout=30, check=False)


def _exit_reason(status: dict | None, stderr: str) -> str:
    if status is None:
        return "error"
    sig, code = status.get("signal"), status.get("exit_code")
    # SIGXCPU at the soft CPU limit; SIGKILL at the hard one (+1 s) when the program ignored SIGXCPU.
    over_cpu = sig == signal.SIGKILL and status.get("cpu_s", 0) >= status["cpu_limit_s"]
    if status.get("timed_out") or sig == signal.SIGXCPU or over_cpu:
        return "timeout"
    if status.get("memory_killed"):  # the cgroup's OOM killer, or the init's watchdog
        return "memory"
    failed = sig is not None or code != 0
    if failed and any(s in stderr for s in ("MemoryError", "Cannot allocate memory", "out of memory")):
        return "memory"
    if sig is not None:
        return "killed"
    return "ok" if code == 0 and status.get("finished") else "error"


def _read(path: str, limit: int, tail: bool = False) -> str:
    with open(path, "rb") as f:
        if tail:
            f.seek(max(0, os.path.getsize(path) - limit))
        return f.read(limit).decode("utf-8", errors="replace")


def _private_file(path: str, text: str = "") -> int:
    """Creates `path` readable by its owner only (other sandboxes can list /tmp); returns a write fd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, text.encode("utf-8"))
    return fd


def _config(outer: str, uid: int | None, limits: Limits, status_fd: int, deadline: float) -> dict:
    """What the launcher needs, as JSON (visible to the program in /proc/1/cmdline: nothing secret)."""
    resources = ("cpu_s", "memory_mb", "processes", "file_mb")
    return {
        "outer": outer,
        "root": os.path.join(outer, "root"),
        "uid": uid,
        "python": _PYTHON,
        "prefix": os.path.realpath(sys.base_prefix),
        "boot": (_HOOKS if limits.hooks else "") + _RUN,
        "env": _ENV,
        "status_fd": status_fd,
        "work_mb": limits.work_mb,
        "kernel": limits.kernel,
        # CLOCK_MONOTONIC is one clock for every process here, so the deadline holds across the fork.
        "limits": {k: getattr(limits, k) for k in resources} | {"deadline": deadline},
    }


def _launch(outer: str, uid: int | None, limits: Limits, deadline: float) -> tuple[dict | None, int]:
    """Runs the launcher to completion; (its status, or None if it wrote none; its exit code)."""
    out, err = (_private_file(os.path.join(outer, name)) for name in ("stdout", "stderr"))
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [_PYTHON, "-I", "-S", _JAIL, json.dumps(_config(outer, uid, limits, write_fd, deadline))],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=_ENV,
            cwd=outer,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    finally:
        for fd in (write_fd, out, err):
            os.close(fd)
    try:
        proc.wait(timeout=max(0.0, deadline + _GRACE_S - time.monotonic()))
    except subprocess.TimeoutExpired:
        # The launcher, the container and the init share this group: the init's death ends the PID
        # namespace. Outside one, the private uid's processes are killed too.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if uid is not None:
            _kill_uid(uid)
    # Read without waiting for EOF: a process that kept the pipe open must not hold up the call.
    os.set_blocking(read_fd, False)
    with os.fdopen(read_fd, "rb") as status_pipe:
        raw = status_pipe.read() or b""
    return (json.loads(raw) if raw else None), proc.returncode


def run(source: str, limits: Limits = DEFAULT_LIMITS) -> Result:
    """Runs the Python program `source` as `__main__` under `limits`; never raises for what it does."""
    deadline = time.monotonic() + limits.timeout_s
    outer = tempfile.mkdtemp(prefix="mixlab-sandbox-")
    try:
        os.chmod(outer, 0o711)  # the uid may pass through to its mount point, not list it
        os.mkdir(os.path.join(outer, "work"), 0o700)  # the working directory without namespaces
        os.mkdir(os.path.join(outer, "root"), 0o700)  # where the launcher mounts the program's root
        os.close(_private_file(os.path.join(outer, "main.py"), source))
        with _private_uid(limits) as uid:
            status, code = _launch(outer, uid, limits, deadline)
        stderr = _read(os.path.join(outer, "stderr"), 4000, tail=True)
        if status is None:
            return Result("error", "", f"{stderr}\nsandbox launcher exited with {code} and no status")
        reason = _exit_reason(status, stderr)
        if status.get("exit_code") == 0 and not status.get("finished") and reason == "error":
            stderr += "\nsandbox: exit status 0, but the program's last statement never returned: not a pass"
        return Result(
            exit_reason=reason,
            stdout=_read(os.path.join(outer, "stdout"), limits.output_bytes),
            stderr_tail=stderr,
            exit_code=status.get("exit_code"),
            signal=status.get("signal"),
            elapsed_s=status.get("elapsed_s", 0.0),
            leftover_processes=status.get("leftover_processes", False),
            isolation=status["setup"],
            finished=status.get("finished", False),
            memory_peak_mb=status.get("memory_peak_mb"),
        )
    finally:
        shutil.rmtree(outer, ignore_errors=True)


def run_many(sources: Sequence[str], limits: Limits = DEFAULT_LIMITS, workers: int = 2) -> list[Result]:
    """`run` over many programs, `workers` at a time (threads: each only waits on its own process)."""
    if workers <= 1 or len(sources) <= 1:
        return [run(s, limits) for s in sources]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda s: run(s, limits), sources))


@functools.cache
def guarantees(limits: Limits = DEFAULT_LIMITS) -> dict[str, str]:
    """What confines a program on this machine under `limits`, found by running an empty one."""
    from mixlab.evals import _guarantees

    result = run("", limits)
    return _guarantees.describe(result.isolation, limits, _ENV, result.passed)
