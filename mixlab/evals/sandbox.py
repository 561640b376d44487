"""Runs untrusted Python (model completions, task files) in a separate, confined process.

Every program gets its own process, started through the launcher `_jail.py`, confined by two layers.

Kernel layer (`Limits.kernel`; namespaces and the uid need root, the rest holds for any user):
  - network: a private network namespace in which no interface is up;
  - filesystem: a private mount namespace where every mount is read-only and nosuid, the working
    directory a private tmpfs of `work_mb` MiB, and the program runs as a private uid owning nothing;
  - processes: RLIMIT_NPROC per private uid; afterwards every process of that uid is killed;
  - RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE (stdout and stderr too), RLIMIT_NOFILE, no core, a wall clock;
  - the environment holds only PATH and LANG; `python -I -S` (no user site, site-packages or PYTHON*).
In-process layer (`Limits.hooks`, an audit hook installed before the program runs): creating a non-AF_UNIX
socket, fork/exec/subprocess/os.system, ctypes, and opening for write (or removing, renaming, ...)
anything outside the working directory raise PermissionError.

Without root (or where `unshare` is refused) the kernel layer falls back to the rlimits, the wall clock,
the empty environment and a process-group kill, and only the audit hooks, which C extensions could get
around (ctypes is blocked), guard network and files. `guarantees()` says what holds on this machine.
Each private uid (61000-61999, none in /etc/passwd) is held by one run at a time through a lock file,
so its process limit and its kill-all never touch another run.
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
from collections.abc import Iterator, Sequence

EXIT_REASONS = ("ok", "timeout", "memory", "killed", "error")
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_JAIL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_jail.py")
# The base interpreter, not the venv's: the sandbox needs only the standard library (-S) and the venv's
# pyvenv.cfg would point the uid at site-packages it must not import.
_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
_UID_BASE, _UID_COUNT = 61_000, 1_000
_LOCK_DIR = os.path.join(tempfile.gettempdir(), "mixlab-sandbox-uids")
_counter = itertools.count()

_HOOKS = r"""
import os, sys
def _install():
    cwd = os.getcwd() + os.sep
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    blocked = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
               "os.forkpty", "os.kill", "os.killpg", "ctypes.dlopen", "ctypes.dlsym", "pty.spawn"}
    on_paths = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.chmod", "os.chown", "os.symlink",
                "os.link", "os.truncate", "os.utime", "os.chflags", "os.mkfifo", "os.mknod"}
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
        elif event in on_paths and not all(inside(a) for a in args[:2] if isinstance(a, (str, bytes))):
            raise PermissionError(f"sandbox: {event} outside the working directory")
    sys.addaudithook(hook)
_install()
del _install
"""
_RUN = r"""
import sys
sys.argv[:] = ["main.py"]
with open("main.py", encoding="utf-8") as _f:
    _code = compile(_f.read(), "main.py", "exec")
exec(_code, {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__})
"""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed program and the confinement layers to use."""

    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 10
    memory_mb: int = 1024  # address space: a bare interpreter maps ~25 MiB
    processes: int = 64  # per private uid (threads count too)
    file_mb: int = 16  # largest file, stdout and stderr included
    work_mb: int = 64  # the working directory's tmpfs
    output_bytes: int = 1 << 20  # stdout kept in the result
    kernel: bool = True
    hooks: bool = True


DEFAULT_LIMITS = Limits()


@dataclasses.dataclass(frozen=True)
class Result:
    """`exit_reason` is one of EXIT_REASONS; `passed` means it is "ok" (exit status 0)."""

    exit_reason: str
    stdout: str
    stderr_tail: str
    exit_code: int | None = None
    signal: int | None = None
    elapsed_s: float = 0.0
    leftover_processes: bool = False
    isolation: dict = dataclasses.field(default_factory=dict)

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
    """Last resort when the launcher itself hung: kill every process of `uid`, a few rounds."""
    code = "import os, time\nfor _ in range(100):\n    os.kill(-1, 9)\n    time.sleep(0.005)\n"
    subprocess.run([_PYTHON, "-I", "-S", "-c", code], user=uid, env=_ENV, timeout=30, check=False)


def _exit_reason(status: dict | None, stderr: str) -> str:
    if status is None:
        return "error"
    # SIGXCPU at the soft CPU limit; SIGKILL at the hard one (+1 s) when the program ignored SIGXCPU.
    over_cpu = status["signal"] == signal.SIGKILL and status["cpu_s"] >= status["cpu_limit_s"]
    if status["timed_out"] or status["signal"] == signal.SIGXCPU or over_cpu:
        return "timeout"
    failed = status["signal"] is not None or status["exit_code"] != 0
    if failed and any(s in stderr for s in ("MemoryError", "Cannot allocate memory", "out of memory")):
        return "memory"
    if status["signal"] is not None:
        return "killed"
    return "error" if failed else "ok"


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


def _config(outer: str, uid: int | None, limits: Limits, status_fd: int) -> dict:
    """What the launcher needs, as JSON."""
    resources = ("timeout_s", "cpu_s", "memory_mb", "processes", "file_mb")
    return {
        "outer": outer,
        "work": os.path.join(outer, "work"),
        "stage": os.path.join(outer, "stage"),
        "uid": uid,
        "python": _PYTHON,
        "prefix": os.path.realpath(sys.base_prefix),
        "boot": (_HOOKS if limits.hooks else "") + _RUN,
        "env": _ENV,
        "status_fd": status_fd,
        "work_mb": limits.work_mb,
        "limits": {k: getattr(limits, k) for k in resources},
    }


def _launch(outer: str, uid: int | None, limits: Limits) -> tuple[dict | None, int]:
    """Runs the launcher to completion; (its status, or None if it wrote none; its exit code)."""
    out, err = (_private_file(os.path.join(outer, name)) for name in ("stdout", "stderr"))
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [_PYTHON, "-I", "-S", _JAIL, json.dumps(_config(outer, uid, limits, write_fd))],
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
    with os.fdopen(read_fd, "rb") as status_pipe:
        try:
            proc.wait(timeout=limits.timeout_s + 30)  # the launcher enforces timeout_s itself
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if uid is not None:
                _kill_uid(uid)
        raw = status_pipe.read()
    return (json.loads(raw) if raw else None), proc.returncode


def run(source: str, limits: Limits = DEFAULT_LIMITS) -> Result:
    """Runs the Python program `source` as `__main__` under `limits`; never raises for what it does."""
    outer = tempfile.mkdtemp(prefix="mixlab-sandbox-")
    try:
        os.chmod(outer, 0o711)  # the uid may pass through to its working directory, not list it
        os.mkdir(os.path.join(outer, "work"), 0o700)
        os.close(_private_file(os.path.join(outer, "main.py"), source))
        with _private_uid(limits) as uid:
            status, code = _launch(outer, uid, limits)
        stderr = _read(os.path.join(outer, "stderr"), 4000, tail=True)
        if status is None:
            return Result("error", "", f"{stderr}\nsandbox launcher exited with {code} and no status")
        return Result(
            exit_reason=_exit_reason(status, stderr),
            stdout=_read(os.path.join(outer, "stdout"), limits.output_bytes),
            stderr_tail=stderr,
            exit_code=status["exit_code"],
            signal=status["signal"],
            elapsed_s=status["elapsed_s"],
            leftover_processes=status["leftover_processes"],
            isolation=status["setup"],
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
    iso = run("", limits).isolation
    uid = iso.get("uid")
    hook = " + audit hook" if limits.hooks else ""
    if iso.get("work_tmpfs") and uid is not None:
        files = f"{iso.get('readonly_mounts', 0)} mounts read-only, {limits.work_mb} MiB tmpfs, uid {uid}"
    else:
        files = f"uid {uid}" if uid is not None else "not at kernel level"
    if uid is not None:
        processes = f"RLIMIT_NPROC={limits.processes} per private uid, all killed after"
    else:
        processes = "process group killed after (a child that calls setsid escapes)"
    return {
        "network": ("network namespace, no interface up" if iso.get("netns") else "not at kernel level")
        + hook,
        "filesystem": files + hook,
        "processes": processes + (" + audit hook (no fork/exec)" if limits.hooks else ""),
        "resources": f"wall {limits.timeout_s} s, CPU {limits.cpu_s} s, "
        f"address space {limits.memory_mb} MiB, files {limits.file_mb} MiB",
        "environment": f"only {', '.join(_ENV)}; python -I -S",
        "errors": "; ".join(iso.get("errors", [])) or "none",
    }
