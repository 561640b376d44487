"""The sandbox launcher: run by `sandbox.py` as `python -I -S _jail.py CONFIG_JSON`, never imported.

Runs as the caller's user (root here) in a fresh, single-threaded interpreter, so namespaces, mounts and
uid changes happen without the fork-with-threads hazards of `preexec_fn`. Steps, each recorded in the
status JSON written to the pipe whose fd the config names:

  1. root only: new network and mount namespaces (`unshare`); the network one has only a loopback
     that is down, so no socket reaches anything, local or remote.
  2. root only: every mount is remounted read-only and nosuid in the private mount namespace; a directory
     the interpreter needs but the sandbox uid cannot traverse (pyenv under /root) is replaced by a
     tmpfs holding only the interpreter's tree; the working directory becomes a private size-limited
     tmpfs owned by the sandbox uid (files written there vanish with the namespace).
  3. fork; the child sets rlimits (CPU, address space, processes, file size, open files, no core),
     no_new_privs, drops to the sandbox uid (root only), and execs `python -I -S -c BOOT main.py`
     with the given minimal environment.
  4. this process is a child subreaper: whatever the program forks stays below it. When the program
     exits or the wall clock runs out, every process of the sandbox uid is killed (kill(-1) from a
     helper running as that uid), or the process group when not root, and all children are reaped.

Only the standard library: this file runs before any environment is set up.
"""

import ctypes
import json
import os
import re
import resource
import signal
import sys
import time

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_PRIVATE, MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1 << 18, 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 38, 36
# statvfs flags that a bind remount must keep (the kernel refuses or drops them otherwise).
_KEEP = {
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}
# Kernel filesystems whose read-only remount would break the interpreter or mean nothing.
_SKIP_FSTYPES = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "bpf", "securityfs", "debugfs"}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()
    _check(
        _libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}"
    )


def _mounts() -> list[tuple[str, str]]:
    """(mount point, fstype) of every mount, in mount order; octal escapes (\\040) decoded."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), left.split()[4])
            out.append((point, right.split()[0]))
    return out


def _remount_readonly(keep_rw: str) -> int:
    """Bind-remounts every mount read-only and nosuid, keeping its other flags; returns how many."""
    done = 0
    for point, fstype in _mounts():
        if fstype in _SKIP_FSTYPES or point == keep_rw or point.startswith(keep_rw + "/"):
            continue
        try:
            flags = os.statvfs(point).f_flag
            keep = sum(ms for st, ms in _KEEP.items() if flags & st)
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | keep)
            done += 1
        except OSError:
            pass  # an overmounted or vanished mount point: the uid layer still protects it
    return done


def _expose(prefix: str, stage: str) -> str | None:
    """Makes `prefix` reachable by any uid when an ancestor is not (0700 /root holding pyenv): a tmpfs
    replaces that ancestor, holding only the path down to `prefix`, bind-mounted from the original."""
    parts = prefix.strip("/").split("/")
    for i in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:i])
        if os.stat(ancestor).st_mode & 0o001:
            continue
        os.makedirs(stage, exist_ok=True)
        _mount(prefix, stage, None, MS_BIND | MS_REC)
        _mount("tmpfs", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        os.makedirs(prefix, mode=0o755)
        _mount(stage, prefix, None, MS_BIND | MS_REC)
        _check(_libc.umount2(stage.encode(), MNT_DETACH), "umount stage")
        return ancestor
    return None


def _isolate(cfg: dict, setup: dict) -> None:
    """Steps 1-2 (root only); each failure is recorded and the remaining layers still apply."""
    try:
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
        setup["netns"] = setup["mountns"] = True
    except OSError as e:
        setup["errors"].append(str(e))
        return
    try:
        _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here propagates to the host
        setup["hidden"] = _expose(cfg["prefix"], cfg["stage"])
        setup["readonly_mounts"] = _remount_readonly(cfg["work"])
        opts = f"size={cfg['work_mb']}m,mode=0700,uid={cfg['uid']},gid={cfg['uid']}"
        _mount("tmpfs", cfg["work"], "tmpfs", MS_NOSUID | MS_NODEV, opts)
        setup["work_tmpfs"] = True
    except OSError as e:
        setup["errors"].append(str(e))


def _child(cfg: dict, source: str, status_fd: int) -> None:
    """Step 3; never returns."""
    try:
        os.close(status_fd)
        os.chdir(cfg["work"])
        with open("main.py", "w") as f:
            f.write(source)
        lim = cfg["limits"]
        mb = 1 << 20
        for res, value in [
            (resource.RLIMIT_CPU, (lim["cpu_s"], lim["cpu_s"] + 1)),
            (resource.RLIMIT_AS, (lim["memory_mb"] * mb,) * 2),
            (resource.RLIMIT_FSIZE, (lim["file_mb"] * mb,) * 2),
            (resource.RLIMIT_NOFILE, (256, 256)),
            (resource.RLIMIT_CORE, (0, 0)),
        ]:
            resource.setrlimit(res, value)
        uid = cfg["uid"]
        if uid is not None:
            os.chown("main.py", uid, uid)
            # Counted per real uid, and root is exempt: only meaningful after the uid drop below.
            resource.setrlimit(resource.RLIMIT_NPROC, (lim["processes"],) * 2)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        else:
            os.setsid()  # without a private uid, the process group is what gets killed
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")  # setuid binaries stay inert
        python = cfg["python"]
        os.execve(python, [python, "-I", "-S", "-c", cfg["boot"], "main.py"], cfg["env"])
    except BaseException as e:
        os.write(2, f"sandbox setup failed: {e!r}\n".encode())
    os._exit(126)


def _live_pids(uid: int) -> list[int]:
    """Processes of `uid` that are not zombies (a zombie only waits to be reaped)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid != uid:
                    continue
                with open(f"/proc/{name}/stat") as f:
                    if f.read().rpartition(")")[2].split()[0] != "Z":
                        pids.append(int(name))
            except OSError:
                pass  # exited meanwhile
    return pids


def _kill_uid(uid: int) -> bool:
    """SIGKILLs every process of `uid` from a helper that becomes `uid`; True if any was running.

    kill(-1) from that uid reaches exactly its processes (and never a reused pid of another user); it is
    repeated while any is alive, since a fork bomb refills between rounds (RLIMIT_NPROC bounds it).
    """
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setuid(uid)
            me = os.getpid()
            for _ in range(10_000):
                if not [p for p in _live_pids(uid) if p != me]:
                    break
                os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except this one
                code = 1
                time.sleep(0.001)
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 1


def main() -> None:
    cfg = json.loads(sys.argv[1])
    status_fd = cfg["status_fd"]
    setup = {"netns": False, "mountns": False, "work_tmpfs": False, "uid": None, "errors": []}
    with open(os.path.join(cfg["outer"], "main.py")) as f:
        source = f.read()
    if cfg["uid"] is not None:  # the caller gives a uid only when it runs as root
        _isolate(cfg, setup)
        # Checked in the (new) mount namespace: without `_expose` the uid may not reach pyenv's /root.
        if _traversable(cfg["prefix"]):
            setup["uid"] = cfg["uid"]
            if not setup["work_tmpfs"]:  # the host directory stands in: the caller removes it
                os.chown(cfg["work"], cfg["uid"], cfg["uid"])
    cfg["uid"] = setup["uid"]
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if cfg["uid"] is not None:
        _kill_uid(cfg["uid"])  # leftovers of a crashed earlier run with this uid
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(cfg, source, status_fd)
    status, usage = _wait(pid, start + cfg["limits"]["timeout_s"])
    elapsed, timed_out = time.monotonic() - start, status is None
    leftover = _kill_uid(cfg["uid"]) if cfg["uid"] is not None else _kill_group(pid)
    if timed_out:
        _, status, usage = os.wait4(pid, 0)
    while True:  # reap everything reparented to this subreaper
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    result = {
        "timed_out": timed_out,
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "elapsed_s": elapsed,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "cpu_limit_s": cfg["limits"]["cpu_s"],
        "leftover_processes": leftover,
        "setup": setup,
    }
    os.write(status_fd, json.dumps(result).encode())


def _wait(pid: int, deadline: float) -> tuple[int | None, object]:
    """(wait status, rusage) of `pid` once it exits, or (None, None) at the deadline."""
    delay = 0.001
    while time.monotonic() < deadline:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage
        time.sleep(delay)
        delay = min(delay * 2, 0.02)  # prompt for short programs, cheap for long ones
    return None, None


def _traversable(path: str) -> bool:
    """Whether any uid can reach `path`: every ancestor directory searchable by others."""
    parts = path.strip("/").split("/")
    return all(os.stat("/" + "/".join(parts[:i])).st_mode & 0o001 for i in range(1, len(parts) + 1))


def _kill_group(pid: int) -> bool:
    try:
        os.killpg(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


if __name__ == "__main__":
    main()
