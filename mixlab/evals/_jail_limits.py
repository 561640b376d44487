"""Resource limits of the sandbox launcher (`_jail.py`): cgroups, seccomp, rlimits, sysctls.

Standard library only (imported by `_jail.py` before any environment is set up), never by mixlab itself.

- `Cgroup`: a memory + pids cgroup made for one run, below the launcher's own cgroup (cgroup v2 where the
  memory and pids controllers are delegated to it, else the v1 `memory` and `pids` hierarchies). It needs
  write access there: root, or a delegated subtree. Its memory bound counts what RLIMIT_AS does not:
  memfd and SysV shm pages, tmpfs files, page tables, and the sum over all processes. No swap.
- `seccomp`: a classic-BPF filter refusing namespaces, mounts, io_uring, ptrace, bpf, keyrings and
  userfaultfd, and, where no cgroup bounds their pages, memfd_create and SysV shm/msg/sem (memory no rlimit
  counts); other architectures than x86_64 and aarch64 get no filter, and the caller records that.
- `deny_nested_namespaces`: no user or mount namespace below the run's own (the kernel's ucounts; a
  second lock on what seccomp already refuses).
"""

import contextlib
import ctypes
import os
import resource
import signal
import struct
import time

_PREFIX = "mixlab-sandbox-"
_libc = ctypes.CDLL(None, use_errno=True)

# Syscall numbers (asm/unistd_64.h, asm-generic/unistd.h) of what a sandboxed program never needs.
_NR = {
    "x86_64": {
        "arch": 0xC000003E,
        "clone": 56,
        "clone3": 435,
        "unbounded": [319, 29, 68, 64],  # memfd_create, shmget, msgget, semget
        "deny": [272, 308, 165, 166, 155, 161, 428, 429, 430, 431, 432, 433, 442, 425, 426, 427, 101, 321]
        + [323, 298, 250, 248, 249, 447],
    },
    "aarch64": {
        "arch": 0xC00000B7,
        "clone": 220,
        "clone3": 435,
        "unbounded": [279, 194, 186, 190],
        "deny": [97, 268, 40, 39, 41, 51, 428, 429, 430, 431, 432, 433, 442, 425, 426, 427, 117, 280]
        + [282, 241, 219, 217, 218, 447],
    },
}
# unshare, setns, mount, umount2, pivot_root, chroot, open_tree, move_mount, fsopen, fsconfig, fsmount,
# fspick, mount_setattr, io_uring_{setup,enter,register}, ptrace, bpf, userfaultfd, perf_event_open,
# keyctl, add_key, request_key, memfd_secret: in that order above.
_CLONE_NEW = 0x7E020080  # CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET,TIME}
_EPERM, _ENOSYS = 1, 38


def _filter(nr: dict, memory_bounded: bool) -> bytes:
    """The BPF program: wrong arch (i386 via int 0x80, x32) is killed; denied calls fail with EPERM."""
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill, errno = 0x7FFF0000, 0x80000000, 0x00050000
    ins = [(ld, 0, 0, 4), (jeq, 1, 0, nr["arch"]), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    if nr is _NR["x86_64"]:
        ins += [(jge, 0, 1, 0x40000000), (ret, 0, 0, kill)]
    # clone3 passes its flags in memory BPF cannot read: ENOSYS makes glibc fall back to clone.
    denied = [(n, _EPERM) for n in nr["deny"]] + [(nr["clone3"], _ENOSYS)]
    if not memory_bounded:
        denied += [(n, _EPERM) for n in nr["unbounded"]]
    for n, e in denied:
        ins += [(jeq, 0, 1, n), (ret, 0, 0, errno | e)]
    ins += [(jeq, 0, 3, nr["clone"]), (ld, 0, 0, 16), (jset, 0, 1, _CLONE_NEW), (ret, 0, 0, errno | _EPERM)]
    ins.append((ret, 0, 0, allow))
    return b"".join(struct.pack("HBBI", *i) for i in ins)


def arch() -> str | None:
    """The architecture the seccomp filter knows this machine as; None: no filter here."""
    return os.uname().machine if os.uname().machine in _NR else None


def seccomp(memory_bounded: bool) -> str | None:
    """Installs the filter on this process (inherited by all it forks and execs); its arch, or None."""
    nr = _NR.get(os.uname().machine)
    if nr is None:
        return None
    code = _filter(nr, memory_bounded)
    buf = ctypes.create_string_buffer(code, len(code))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Prog(len(code) // 8, ctypes.addressof(buf))
    pr_set_seccomp, seccomp_mode_filter = 22, 2
    if _libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter refused")
    return os.uname().machine


def set_rlimits(lim: dict, nproc: int | None) -> None:
    """RLIMIT_CPU (SIGXCPU, SIGKILL 1 s later), AS, FSIZE (stdout too), NOFILE, no core, no mqueues."""
    mb = 1 << 20
    for res, value in [
        (resource.RLIMIT_CPU, (lim["cpu_s"], lim["cpu_s"] + 1)),
        (resource.RLIMIT_AS, (lim["memory_mb"] * mb,) * 2),
        (resource.RLIMIT_FSIZE, (lim["file_mb"] * mb,) * 2),
        (resource.RLIMIT_NOFILE, (256, 256)),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_MSGQUEUE, (0, 0)),
    ]:
        resource.setrlimit(res, value)
    if nproc is not None:  # counted per uid (per user namespace, kernel >= 5.14); root is exempt
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def deny_nested_namespaces() -> list[str]:
    """Run in the user namespace's init (CAP_SYS_RESOURCE there); the writes that failed.

    The IPC sysctls (shmall, ...) cannot be set here: the kernel lets only the namespace's uid 0 write
    them, and the single uid an unprivileged caller may map is the program's, never 0. Hence the
    seccomp rules for SysV IPC where no cgroup counts its memory."""
    failed = []
    for name in ("max_user_namespaces", "max_mnt_namespaces"):
        try:
            with open(f"/proc/sys/user/{name}", "w") as f:
                f.write("0")
        except OSError as e:
            failed.append(f"{name}: {e.strerror}")
    return failed


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _cgroup_mounts() -> tuple[str | None, dict[str, str]]:
    """(cgroup2 mount point, {v1 controller: mount point}) from mountinfo; only mounts of root "/"."""
    v2, v1 = None, {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields, (fstype, _, opts) = left.split(), right.split()[:3]
            if fields[3] != "/":
                continue  # a bind of a subtree: where we sit inside it is not known
            if fstype == "cgroup2":
                v2 = v2 or fields[4]
            elif fstype == "cgroup":
                for c in ("memory", "pids"):
                    if c in opts.split(","):
                        v1.setdefault(c, fields[4])
    return v2, v1


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and "" for v2."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else [""]:
                out[name] = path
    return out


def _sweep(parent: str) -> None:
    """Removes cgroups that dead launchers (SIGKILLed by their caller) left in `parent`."""
    for name in os.listdir(parent):
        if not name.startswith(_PREFIX) or not name[len(_PREFIX) :].isdigit():
            continue
        try:
            os.kill(int(name[len(_PREFIX) :]), 0)
        except ProcessLookupError:
            Cgroup([os.path.join(parent, name)], "").remove()
        except PermissionError:
            pass  # alive, another user's


class Cgroup:
    """The run's cgroup directories (one for v2; memory and pids for v1)."""

    def __init__(self, dirs: list[str], kind: str):
        self.dirs, self.kind = dirs, kind

    @classmethod
    def create(cls, memory_mb: int, pids: int) -> tuple["Cgroup | None", str]:
        """A fresh cgroup bounding memory (no swap) and processes; (None, why) where none can be made."""
        name = f"{_PREFIX}{os.getpid()}"
        v2, v1 = _cgroup_mounts()
        own = _own_paths()
        why = []
        if v2 and "" in own:
            parent = v2 + own[""].rstrip("/")
            try:
                with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                    enabled = f.read().split()
                if {"memory", "pids"} <= set(enabled):
                    _sweep(parent)
                    cg = cls([os.path.join(parent, name)], "v2")
                    os.mkdir(cg.dirs[0])
                    _write(os.path.join(cg.dirs[0], "memory.max"), str(memory_mb << 20))
                    _write(os.path.join(cg.dirs[0], "memory.swap.max"), "0")
                    _write(os.path.join(cg.dirs[0], "pids.max"), str(pids))
                    return cg, ""
                why.append("cgroup v2 has no memory+pids controllers delegated here")
            except OSError as e:
                why.append(f"cgroup v2: {e.strerror}")
        if "memory" in v1 and "memory" in own:
            cg = cls([], "v1")
            try:
                for c in ("memory", "pids"):
                    if c not in v1 or c not in own:
                        continue
                    parent = v1[c] + own[c].rstrip("/")
                    _sweep(parent)
                    cg.dirs.append(os.path.join(parent, name))
                    os.mkdir(cg.dirs[-1])
                    if c == "pids":
                        _write(os.path.join(cg.dirs[-1], "pids.max"), str(pids))
                        continue
                    _write(os.path.join(cg.dirs[-1], "memory.limit_in_bytes"), str(memory_mb << 20))
                    swap = os.path.join(cg.dirs[-1], "memory.memsw.limit_in_bytes")
                    if os.path.exists(swap):
                        _write(swap, str(memory_mb << 20))
                return cg, ""
            except OSError as e:
                cg.remove()
                why.append(f"cgroup v1: {e.strerror}")
        return None, "; ".join(why) or "no cgroup hierarchy with a memory controller"

    def add(self, pid: int) -> None:
        for d in self.dirs:
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def _read(self, name: str) -> str:
        for d in self.dirs:
            path = os.path.join(d, name)
            if os.path.exists(path):
                with open(path) as f:
                    return f.read()
        return ""

    def oom_kills(self) -> int:
        """How many processes the kernel killed for going over the memory bound."""
        text = self._read("memory.events") or self._read("memory.oom_control")
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(counts.get("oom_kill", 0))

    def peak_mb(self) -> float | None:
        text = self._read("memory.peak") or self._read("memory.max_usage_in_bytes")
        return int(text) / (1 << 20) if text.strip().isdigit() else None

    def kill(self) -> None:
        """SIGKILLs every process left in the cgroup, a few rounds (a fork bomb refills between them)."""
        for d in self.dirs:
            if os.path.exists(os.path.join(d, "cgroup.kill")):
                _write(os.path.join(d, "cgroup.kill"), "1")
            for _ in range(1000):
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids = [int(p) for p in f.read().split()]
                if not pids:
                    break
                for p in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
                time.sleep(0.001)

    def remove(self) -> None:
        """Kills what is left and removes the directories (retrying while killed tasks finish exiting)."""
        for d in self.dirs:
            if not os.path.isdir(d):
                continue
            # No memory.force_empty: it would drop the page cache the run faulted in (the interpreter's
            # files), which the next run then reads from disk again; the kernel reparents the charges.
            with contextlib.suppress(OSError):
                Cgroup([d], self.kind).kill()
            for _ in range(200):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)
