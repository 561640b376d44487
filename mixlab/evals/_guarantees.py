"""`sandbox.guarantees()` in words: what the launcher reported it set up, layer by layer.

Each line states only what the setup record shows held for an actual (empty) run on this machine; a layer
that is missing says so and what replaces it, so a weaker fallback is never mistaken for the full jail.
"""

from __future__ import annotations

import os
from typing import Any


def _hook(limits: Any, what: str) -> str:
    return f" + audit hook {what} (best effort: pure Python can get around it)" if limits.hooks else ""


def _memory(iso: dict, limits: Any) -> str:
    per_process = f"address space {limits.memory_mb} MiB per process"
    if iso.get("cgroup"):
        return (
            f"cgroup {iso['cgroup']}: {limits.memory_mb} MiB for all processes together, no swap (memfd, "
            f"shm, tmpfs and kernel memory count); {per_process}"
        )
    refused = ", memfd_create and SysV IPC refused (seccomp)" if iso.get("seccomp") else ""
    if iso.get("namespaces") and iso.get("proc"):
        return (
            f"no cgroup: {per_process}, the run's total PSS polled by its init every 10 ms and killed "
            f"over {limits.memory_mb} MiB (coarse: it can overshoot by what 10 ms allocate){refused}"
        )
    return f"no cgroup: {per_process} only, the sum over processes is not bounded{refused}"


def _processes(iso: dict, limits: Any) -> str:
    hook = _hook(limits, "also refuses fork/exec")
    if iso.get("namespaces"):
        proc = "its own /proc" if iso.get("proc") else "no /proc (the kernel refused a fresh one)"
        cap = ("pids cgroup + " if iso.get("cgroup") else "") + "RLIMIT_NPROC"
        return (
            f"PID namespace with {proc}: no host process visible or signallable; all killed when the call "
            f"returns; at most {limits.processes} ({cap})" + hook
        )
    if iso.get("uid") is not None:
        return f"RLIMIT_NPROC={limits.processes} per private uid, all killed after" + hook
    return "every descendant killed after, setsid or not (no process limit: runs as the caller)" + hook


def _user(iso: dict) -> str:
    uid = iso.get("uid")
    if iso.get("userns"):
        # Unprivileged, the only uid one may map is one's own: a private one needs root.
        whose = "the caller's own" if uid == os.geteuid() else "a private"
        return f"user namespace: uid 1000 inside is {whose} host uid {uid}, no capabilities, no_new_privs"
    if uid is not None:
        return f"private host uid {uid}, no_new_privs"
    return "the caller's own uid (not at kernel level)"


def describe(iso: dict, limits: Any, env: dict, empty_passed: bool) -> dict[str, str]:
    """The guarantees of `sandbox.guarantees()` from the setup record `iso` of an empty run."""
    ns = iso.get("namespaces")
    if iso.get("root"):
        files = (
            "minimal read-only root (system libraries, the interpreter); no host /tmp, /run, /dev/shm, "
            f"home or their unix sockets; writable only the {limits.work_mb} MiB private tmpfs working "
            "directory"
        )
    else:
        files = "the host's filesystem (not at kernel level)"
    verdict = (
        "pass = exit status 0 and the run's random token, written after the program's last statement "
        "returned (SystemExit(0), os._exit(0) fail); the token lives in the program's interpreter, so a "
        "program digging for it could forge a pass"
    )
    return {
        "network": ("network namespace, no interface up" if ns else "not at kernel level")
        + _hook(limits, "refuses non-AF_UNIX sockets"),
        "filesystem": files + _hook(limits, "refuses writes outside the working directory"),
        "user": _user(iso),
        "processes": _processes(iso, limits),
        "memory": _memory(iso, limits),
        "ipc": "IPC namespace: SysV objects die with the run" if ns else "the host's IPC namespace",
        "syscalls": f"seccomp ({iso['seccomp']}): no new namespaces, mounts, io_uring, ptrace, bpf, "
        "keyrings, userfaultfd"
        if iso.get("seccomp") and limits.kernel
        else "no seccomp filter",
        "resources": f"wall {limits.timeout_s} s (+2 s at most for the call), CPU {limits.cpu_s} s, "
        f"files {limits.file_mb} MiB, 256 open files",
        "environment": f"only {', '.join(env)}; python -I -S",
        "verdict": verdict if empty_passed else "BROKEN: an empty program did not pass here",
        "errors": "; ".join(iso.get("errors", [])) or "none",
    }
