"""The sandbox's filesystem, built by the launcher (`_jail.py`) in the run's own mount namespace.

The program's / is a fresh tmpfs of `work_mb` MiB holding only:
  - read-only, nosuid, nodev binds of /usr (with /bin, /sbin, /lib* as on the host: links or binds), the
    interpreter's prefix (pyenv's lives under 0700 /root: the tmpfs gives it traversable parents) and a few
    /etc files the C library and Python read (ld.so.cache, localtime, ssl, alternatives);
  - /dev with null, zero, full, random and urandom bound from the host, and /dev/fd links;
  - empty, read-only /tmp, /run, /var/tmp and /dev/shm: the host's, with their unix sockets, are not there;
  - a fresh /proc of the run's PID namespace (where the kernel allows one), so no host process is listed;
  - /sandbox, the working directory: the only writable place, on the same tmpfs, so `work_mb` and the
    inode cap bound all the program can write.
Everything else of the host (/home, /root, /sys, /work, cgroupfs, ...) does not exist inside. The
tmpfs is mounted at a host directory and then made the root with pivot_root; the old root is detached.

Standard library only; imported by `_jail.py`, never by mixlab itself.
"""

import ctypes
import os

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_PRIVATE, MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1 << 18, 1024, 2048, 1 << 21
MNT_DETACH = 2
O_PATH = 0o10000000
WORK = "/sandbox"
_NR_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_TOPS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "ssl")
_DEVICES = ("null", "zero", "full", "random", "urandom")
_EMPTY = ("tmp", "run", "var/tmp", "dev/shm", "proc", "etc", "home", ".old")
# statvfs flags a bind remount must repeat: the kernel refuses to drop those the host mount locked.
_KEEP = {
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()
    _check(
        _libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}"
    )


def make_private() -> None:
    """Nothing mounted in this namespace from now on propagates to the host's."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def plan(prefixes: list[str]) -> list[tuple[str, str]]:
    """(kind, host path) of every entry of the new root: "link", "dir", "file" or "dev"."""
    out = []
    for name in _TOPS:
        path = "/" + name
        if os.path.islink(path):
            out.append(("link", path))
        elif os.path.isdir(path):
            out.append(("dir", path))
    covered = [p for k, p in out if k == "dir"]
    for prefix in prefixes:
        real = os.path.realpath(prefix)
        if not any(real == c or real.startswith(c + "/") for c in covered):
            out.append(("dir", real))
            covered.append(real)
    for name in _ETC:
        path = "/etc/" + name
        if os.path.islink(path):
            out.append(("link", path))
        elif os.path.isdir(path):
            out.append(("dir", path))
        elif os.path.isfile(path):
            out.append(("file", path))
    out += [("dev", "/dev/" + d) for d in _DEVICES if os.path.exists("/dev/" + d)]
    return out


def open_sources(entries: list[tuple[str, str]]) -> dict[str, int]:
    """O_PATH fds of the bind sources, opened while this process may still traverse them (root may
    reach pyenv under /root; the sandbox uid it becomes next may not). Needs the new mount namespace:
    a bind source must belong to it."""
    return {p: os.open(p, O_PATH | os.O_CLOEXEC) for k, p in entries if k != "link"}


def _bind_readonly(fd: int, target: str, device: bool) -> None:
    mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
    flags = os.statvfs(target).f_flag
    keep = sum(ms for st, ms in _KEEP.items() if flags & st)
    if device:
        keep &= ~MS_NODEV  # a device node on a nodev mount cannot be opened
    else:
        keep |= MS_NODEV
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | keep)


def build_root(root: str, entries: list[tuple[str, str]], fds: dict[str, int], uid: int) -> None:
    """Fills the tmpfs that `mount_tmpfs` put at `root` (see the module docstring); `uid` is the
    program's, owner of the working directory."""
    for name in _EMPTY:
        os.makedirs(os.path.join(root, name), mode=0o755, exist_ok=True)
    os.mkdir(root + WORK, 0o700)
    os.chown(root + WORK, uid, uid)  # a no-op in a user namespace, where this process is `uid` already
    for kind, path in entries:
        target = root + path
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if kind == "link":
            os.symlink(os.readlink(path), target)
            continue
        if kind == "dir":
            os.makedirs(target, mode=0o755, exist_ok=True)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        _bind_readonly(fds[path], target, kind == "dev")
    for name, to in [("fd", ""), ("stdin", "/0"), ("stdout", "/1"), ("stderr", "/2")]:
        os.symlink("/proc/self/fd" + to, f"{root}/dev/{name}")
    with open(f"{root}/etc/passwd", "w") as f:
        f.write(f"sandbox:x:{uid}:{uid}:sandbox:{WORK}:/bin/sh\n")
    with open(f"{root}/etc/group", "w") as f:
        f.write(f"sandbox:x:{uid}:\n")
    with open(f"{root}/etc/hosts", "w") as f:
        f.write("127.0.0.1 localhost\n")
    # The working directory as a mount of its own, so it stays writable when / is made read-only.
    mount(root + WORK, root + WORK, None, MS_BIND)
    mount(None, root + WORK, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)


def mount_tmpfs(root: str, uid: int, work_mb: int) -> None:
    # nr_inodes caps kernel memory too: each inode costs ~1 KiB that `size` does not count.
    opts = f"size={work_mb}m,nr_inodes=16384,mode=0755,uid={uid},gid={uid}"
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, opts)


def enter_root(root: str, setup: dict) -> None:
    """In the PID namespace's init: a fresh /proc, pivot_root into `root`, old root detached, / read-only."""
    try:
        # Must come before the old root goes: the kernel mounts a proc in a user namespace only where
        # a fully visible one is already mounted. Refused (e.g. a container masking /proc paths), /proc
        # stays an empty directory, which still lists no host process.
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        setup["proc"] = True
    except OSError as e:
        setup["errors"].append(str(e))
    nr = _NR_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(0, f"pivot_root: unknown syscall number on {os.uname().machine}")
    os.chdir(root)
    _check(_libc.syscall(nr, b".", b".old"), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    setup["root"] = True
