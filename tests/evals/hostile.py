"""Hostile completions for `def add(a, b)` (each returns a + b only if its attack worked) and the helpers
that let a test process become an unprivileged caller."""

import ctypes
import os
import sys
import tempfile

_HEADER = "    import os, sys, time, json, signal, socket\n"


def completions(p: dict) -> dict[str, str]:
    """name -> function body; `p` holds the host's targets (`_Host.params`)."""
    return {
        "control": "    return a + b\n",
        "system_exit": "    raise SystemExit(0)\n",
        "os_exit": "    import os\n    os._exit(0)\n",
        # 16 MiB per memfd (the file-size limit), 2 GiB in all: written, never mapped (no RLIMIT_AS).
        "memfd": _HEADER
        + """    n, chunk = 0, b"x" * (8 << 20)
    try:
        while n < (2 << 30):
            fd = os.memfd_create("m")
            os.write(fd, chunk)
            os.write(fd, chunk)
            n += 16 << 20
            print(n, flush=True)
    except OSError as e:
        print("refused", e, flush=True)
    return a + b if n >= (2 << 30) else 0
""",
        # 64 MiB segments, each touched through a mapping then detached: they stay allocated.
        "sysv_shm": _HEADER
        + f"""    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    n, size = 0, 64 << 20
    try:
        while n < (2 << 30):
            sid = libc.shmget({p["shm_key"]} + n // size, size, 0o1600)
            if sid < 0:
                raise OSError(ctypes.get_errno(), "shmget")
            addr = libc.shmat(sid, None, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_errno(), "shmat")
            ctypes.memset(addr, 1, size)
            libc.shmdt(ctypes.c_void_p(addr))
            n += size
            print(n, flush=True)
    except OSError as e:
        print("refused", e, flush=True)
    return a + b if n >= (2 << 30) else 0
""",
        # Four processes of 128 MiB each: every one within its address space, 512 MiB together.
        "spread": _HEADER
        + """    kids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            x = b"x" * (128 << 20)
            time.sleep(1.5)
            os._exit(0)
        kids.append(pid)
    alive = sum(os.waitpid(k, 0)[1] == 0 for k in kids)
    print("survived", alive, flush=True)
    return a + b if alive == 4 else 0
""",
        "unix_socket": _HEADER
        + f"""    got = []
    for addr in ({p["path"]!r}, "\\0" + {p["abstract"]!r}):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(1)
            s.connect(addr)
            got.append(s.recv(64))
        except OSError as e:
            print("unreachable", type(e).__name__, flush=True)
    try:
        got.append(open({p["secret"]!r}).read())
    except OSError as e:
        print("no host file", type(e).__name__, flush=True)
    return a + b if got else 0
""",
        "tcp": _HEADER
        + f"""    try:
        socket.create_connection(("127.0.0.1", {p["port"]}), timeout=1).sendall(b"x")
        return a + b
    except OSError as e:
        print("tcp", type(e).__name__, e, flush=True)
    return 0
""",
        "proc": _HEADER
        + """    lines = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            lines[int(pid)] = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            pass
    print(json.dumps(sorted(lines)), flush=True)
    host = [c for c in lines.values() if "pytest" in c or "mixlab-hostile-evaluator" in c]
    return a + b if host or len(lines) > 2 else 0
""",
        "kill": _HEADER
        + f"""    os.kill(1, signal.SIGKILL)  # the namespace's init: the kernel drops it
    try:
        os.kill(-1, signal.SIGKILL)  # every process this one may signal: none but the init here
    except OSError as e:
        print("kill -1", type(e).__name__, flush=True)
    try:
        os.kill({p["evaluator_pid"]}, signal.SIGKILL)
        return a + b
    except OSError as e:
        print("kill", type(e).__name__, flush=True)
    return 0
""",
        # A setsid child ignoring signals becomes a fork loop; the parent sleeps past the timeout.
        "setsid": _HEADER
        + f"""    loop = "import os, time\\nwhile True:\\n    try:\\n        os.fork()\\n"
    loop += "    except OSError:\\n        time.sleep(0.01)\\n"
    if os.fork() == 0:
        os.setsid()
        for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        os.execv(sys.executable, [sys.executable, "-c", loop, {p["marker"]!r}])
    print("forked", flush=True)
    time.sleep(60)
    return a + b
""",
    }


_libc = ctypes.CDLL(None, use_errno=True)
MS_BIND, MS_REC, MS_PRIVATE, MNT_DETACH = 4096, 16384, 1 << 18, 2


def _mount(src, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()
    if _libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def expose_interpreter() -> None:
    """As root, in a private mount namespace of this process: makes the interpreter's prefix reachable
    by any uid when an ancestor is not (pyenv under 0700 /root), as a normal user's own Python would be.
    A tmpfs replaces that ancestor, holding only the path down to the prefix, bound from the original."""
    if _libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    prefix = os.path.realpath(sys.base_prefix)
    parts = prefix.strip("/").split("/")
    for i in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:i])
        if os.stat(ancestor).st_mode & 0o001:
            continue
        stage = tempfile.mkdtemp()
        _mount(prefix, stage, None, MS_BIND | MS_REC)
        _mount("tmpfs", ancestor, "tmpfs", 0, "mode=0755,size=1m")
        os.makedirs(prefix, mode=0o755)
        _mount(stage, prefix, None, MS_BIND | MS_REC)
        _libc.umount2(stage.encode(), MNT_DETACH)
        return


def drop_to(uid: int) -> None:
    """Becomes `uid` for good (no groups, no way back)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    assert os.geteuid() == uid and os.getuid() == uid
