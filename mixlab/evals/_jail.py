"""The sandbox launcher: run by `sandbox.py` as `python -I -S _jail.py CONFIG_JSON`, never imported.

Plain forks of this fresh, single-threaded interpreter (no fork-with-threads hazards of `preexec_fn`):

  launcher (this process: the caller's uid, the host's namespaces). Makes the run's cgroup where it may
    (`_jail_limits.Cgroup`), forks the container, writes its uid/gid maps, puts it in the cgroup, and is
    the backstop: 1 s past the deadline it SIGKILLs the init, which ends the PID namespace and all in it.
  container: new user, mount, network (no interface up), IPC, PID and UTS namespaces. Builds the root
    filesystem (`_jail_fs`), becomes uid 1000 of the user namespace and forks the init.
  init: pid 1 of the new PID namespace, with capabilities in the user namespace only. Mounts /proc,
    pivots into the new root, forks the program and supervises it (wall clock; a memory watchdog where no
    cgroup bounds memory); at the end kill(-1, SIGKILL). When it exits the kernel kills whatever is left in
    the namespace before the container's wait for it returns, so nothing outlives the call.
  program: rlimits, no_new_privs, seccomp, and exec of `python -I -S -c BOOT main.py` as uid 1000 of the
    user namespace (the private host uid for a root caller, the caller's own uid otherwise); exec as a
    non-zero uid drops every capability.

Where user namespaces are refused, a root caller gets the same namespaces without one (the program then
drops to the private uid). Where no namespace can be made, or `kernel` is off, the program runs directly
below the launcher with the rlimits, the private uid (root) or its process group, and `setup` says so.

The status JSON written to `status_fd` holds `finished`: whether the boot code wrote the run's random
token to fd 4 after the program's last statement returned (see `sandbox.py`).
"""

import ctypes
import fcntl
import json
import os
import select
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's directory out
import _jail_fs
import _jail_limits
import _jail_wait

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE = 38, 36, 4
INNER_UID = 1000  # the program's uid inside the user namespace
BACKSTOP_S = 1.0  # the launcher's margin over the init's own wall clock

_libc = ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


class _Reports:
    """JSON lines from the container and the init, read with a deadline."""

    def __init__(self, fd: int):
        self.fd, self.buf, self.eof = fd, b"", False

    def get(self, deadline: float) -> dict | None:
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if self.eof or left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 1 << 16)
            self.eof = not chunk
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)


def _reporter(fd: int):
    return lambda **msg: os.write(fd, (json.dumps(msg) + "\n").encode())


def _program(cfg: dict, source_dir: str, pipes: tuple[int, int], uid: int | None, kernel: bool) -> None:
    """The program's process: never returns. `uid` is the one to drop to (None: stay)."""
    try:
        # The boot code reads the token from fd 3 and writes it to fd 4; nothing else stays open.
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in pipes]
        os.dup2(moved[0], 3)
        os.dup2(moved[1], 4)
        os.closerange(5, 1 << 16)
        os.chdir(source_dir)
        lim = cfg["limits"]
        nproc = lim["processes"] + 2 if uid is not None or cfg["userns"] else None
        _jail_limits.set_rlimits(lim, nproc)
        if uid is not None:
            os.chown("main.py", uid, uid)
            if not cfg["userns"]:
                os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        if not cfg["namespaces"]:
            os.setsid()  # without a PID namespace, the process group is what gets killed
        if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:  # setuid binaries stay inert
            raise OSError(ctypes.get_errno(), "no_new_privs")
        if kernel:
            _jail_limits.seccomp(cfg["memory_bounded"])
        python = cfg["python"]
        os.execve(python, [python, "-I", "-S", "-c", cfg["boot"], "main.py"], cfg["env"])
    except BaseException as e:
        os.write(2, f"sandbox setup failed: {e!r}\n".encode())
    os._exit(126)


def _init(cfg: dict, source: str, pipes: tuple[int, int], report, uid: int) -> None:
    """Pid 1 of the new PID namespace; never returns."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a handler would let the program signal us
        setup = {"proc": False, "root": False, "errors": []}
        _jail_fs.enter_root(cfg["root"], setup)
        _libc.sethostname(b"sandbox", 7)  # the UTS namespace's: the host's name is not the program's
        if cfg["userns"]:  # never in the host's user namespace: these sysctls would be the host's
            setup["errors"] += _jail_limits.deny_nested_namespaces()
        with open(f"{_jail_fs.WORK}/main.py", "w") as f:
            f.write(source)
        report(setup=setup)
        pid = os.fork()
        if pid == 0:
            _program(cfg, _jail_fs.WORK, pipes, None if cfg["userns"] else uid, True)
        for fd in pipes:
            os.close(fd)
        watch = None if cfg["memory_bounded"] else cfg["limits"]["memory_mb"]
        report(exit=_jail_wait.supervise(pid, cfg["limits"]["deadline"], watch, init=True))
    except BaseException as e:
        report(error=f"sandbox init: {e!r}")
    os._exit(0)


def _container(cfg: dict, source: str, pipes: tuple[int, int], rep_w: int, go_r: int) -> None:
    """Enters the namespaces, builds the root and runs the init below; never returns."""
    report = _reporter(rep_w)
    root_caller = cfg["uid"] is not None
    try:
        if root_caller:
            os.setgroups([])  # root's supplementary groups would follow into a user namespace
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWUTS
        try:
            _unshare(flags | CLONE_NEWUSER)
            userns = True
        except OSError:
            if not root_caller:
                raise
            _unshare(flags)
            userns = False
        report(userns=userns)
    except BaseException as e:
        report(error=str(e))
        os._exit(1)
    try:
        if os.read(go_r, 2) != b"go":
            os._exit(1)
        os.close(go_r)
        # Not before: the launcher, when unprivileged, may write our uid_map only while we are dumpable.
        # From here the program, same uid, may not ptrace the container or the init, nor read their fds.
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        cfg.update(userns=userns, namespaces=True)
        uid = INNER_UID if userns else cfg["uid"]
        entries = _jail_fs.plan([cfg["prefix"], os.path.dirname(cfg["python"])])
        _jail_fs.make_private()
        fds = _jail_fs.open_sources(entries)
        _jail_fs.mount_tmpfs(cfg["root"], uid, cfg["work_mb"])
        if userns:  # from here on files made are the program's (uid 1000 inside, mapped outside)
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        _jail_fs.build_root(cfg["root"], entries, fds, uid)
        for fd in fds.values():
            os.close(fd)
    except BaseException as e:  # a user namespace without mount rights (AppArmor, some containers)
        report(refused=f"sandbox root: {e!r}")
        os._exit(1)
    try:
        init = os.fork()
        if init == 0:
            _init(cfg, source, pipes, report, uid)
        report(init=init)
        for fd in pipes:
            os.close(fd)
        os.waitpid(init, 0)
    except BaseException as e:
        report(error=f"sandbox setup: {e!r}")
    os._exit(0)


def _map_ids(pid: int, cfg: dict) -> None:
    """uid/gid 1000 inside = the private uid (root caller) or the caller's own ids (the one an
    unprivileged process may map); setgroups stays denied either way."""
    uid = cfg["uid"] if cfg["uid"] is not None else os.geteuid()
    gid = cfg["uid"] if cfg["uid"] is not None else os.getegid()
    for name, text in [
        ("setgroups", "deny"),
        ("uid_map", f"{INNER_UID} {uid} 1"),
        ("gid_map", f"{INNER_UID} {gid} 1"),
    ]:
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(text)


def _contained(cfg: dict, setup: dict, source: str, pipes: tuple[int, int], cg) -> dict | None:
    """The namespaced run; its exit record, or None when no namespace could be made (fall back)."""
    rep_r, rep_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rep_r)
        os.close(go_w)
        os.close(cfg["status_fd"])
        _container(cfg, source, pipes, rep_w, go_r)
    os.close(rep_w)
    os.close(go_r)
    reports = _Reports(rep_r)
    deadline = cfg["limits"]["deadline"] + BACKSTOP_S
    first = reports.get(deadline)
    if first is None or "error" in first:
        os.close(go_w)
        os.waitpid(pid, 0)
        setup["errors"].append(f"namespaces refused: {first['error'] if first else 'no answer'}")
        return None
    setup.update(first, namespaces=True)
    try:
        if first["userns"]:
            _map_ids(pid, cfg)
        if cg is not None:
            cg.add(pid)  # before the init forks: all it starts is counted
        os.write(go_w, b"go")
    except OSError as e:  # fail closed: no run without its maps and its cgroup
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        setup["errors"].append(f"sandbox setup: {e}")
        return {}
    os.close(go_w)
    init, record = None, None
    while (msg := reports.get(deadline)) is not None:
        init = msg.get("init", init)
        record = msg.get("exit", record)
        if "setup" in msg:
            setup["errors"] += msg["setup"].pop("errors")
            setup.update(msg["setup"])
        if "error" in msg:
            setup["errors"].append(msg["error"])
        if "refused" in msg:  # nothing ran yet: fall back, and say so
            os.waitpid(pid, 0)
            setup.update(namespaces=False, userns=False)
            setup["errors"].append(f"namespaces refused: {msg['refused']}")
            return None
    if not reports.eof:  # past the deadline: the init (or the setup) hangs
        # The init's death ends the namespace, and the container's wait for it returns only after the
        # kernel killed all in it; kill the container itself only if there is no init yet.
        os.kill(pid if init is None else init, signal.SIGKILL)
        record = record or {"timed_out": True, "signal": signal.SIGKILL}
        setup["errors"].append("the launcher's backstop killed the sandbox")
    os.waitpid(pid, 0)
    return record or {}


def _direct(cfg: dict, setup: dict, source: str, pipes: tuple[int, int], cg) -> dict:
    """No namespaces: the program below this process in the outer working directory."""
    work = os.path.join(cfg["outer"], "work")
    uid = cfg["uid"] if cfg["kernel"] else None
    parts = os.path.dirname(cfg["python"]).strip("/").split("/")
    if uid is not None and not all(
        os.stat("/" + "/".join(parts[:i])).st_mode & 0o001 for i in range(1, len(parts) + 1)
    ):  # pyenv under 0700 /root: no tmpfs can expose it without a mount namespace
        uid = None
        setup["errors"].append("the private uid cannot reach the interpreter: the program runs as root")
    with open(os.path.join(work, "main.py"), "w") as f:
        f.write(source)
    if uid is not None:
        os.chown(work, uid, uid)
    setup["uid"] = uid  # None: the caller's own
    cfg.update(userns=False, namespaces=False)
    pid = os.fork()
    if pid == 0:
        try:
            if cg is not None:
                cg.add(os.getpid())
        except BaseException as e:  # never unwind into the launcher's own code in this fork
            os.write(2, f"sandbox setup failed: {e!r}\n".encode())
            os._exit(126)
        _program(cfg, work, pipes, uid, cfg["kernel"])
    for fd in pipes:
        os.close(fd)
    record = _jail_wait.supervise(pid, cfg["limits"]["deadline"], None, init=False)
    if cg is not None:
        cg.kill()
    elif uid is not None:
        record["leftover_processes"] |= _jail_wait.kill_uid(uid)
    return record


def main() -> None:
    cfg = json.loads(sys.argv[1])
    lim = cfg["limits"]
    setup = {"namespaces": False, "userns": False, "root": False, "proc": False, "cgroup": None}
    setup.update(seccomp=None, uid=None, errors=[])
    with open(os.path.join(cfg["outer"], "main.py")) as f:
        source = f.read()
    token = os.urandom(16).hex().encode()
    tok_r, tok_w = os.pipe()
    os.write(tok_w, token)
    os.close(tok_w)
    done_r, done_w = os.pipe()
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # whatever the program forks stays below us
    cg = None
    if cfg["kernel"]:
        cg, why = _jail_limits.Cgroup.create(lim["memory_mb"], lim["processes"] + 2)
        setup["cgroup"] = cg.kind if cg else None
        if why:
            setup["errors"].append(f"no cgroup: {why}")
        setup["seccomp"] = _jail_limits.arch()
    cfg["memory_bounded"] = cg is not None
    try:
        record = _contained(cfg, setup, source, (tok_r, done_w), cg) if cfg["kernel"] else None
        if record is None:
            record = _direct(cfg, setup, source, (tok_r, done_w), cg)
        if cg is not None:
            record["memory_killed"] = record.get("memory_killed") or cg.oom_kills() > 0
            record["memory_peak_mb"] = cg.peak_mb()
    finally:
        if cg is not None:
            cg.remove()
    os.set_blocking(done_r, False)
    try:
        done = os.read(done_r, 1 << 10)
    except BlockingIOError:
        done = b""
    if setup["namespaces"]:  # the host uid the program ran as (`_direct` sets it otherwise)
        setup["uid"] = cfg["uid"] if cfg["uid"] is not None else os.geteuid()
    _jail_wait.reap(False)  # an init the backstop killed may have been handed to us
    record.update(finished=done == token, cpu_limit_s=lim["cpu_s"], setup=setup)
    os.write(cfg["status_fd"], json.dumps(record).encode())


if __name__ == "__main__":
    main()
