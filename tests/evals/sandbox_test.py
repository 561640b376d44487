"""The sandbox contains hostile programs, each failing alone, promptly, with the right exit reason.

Every hostile program runs under three configurations: both layers (the default), the kernel layer
alone (namespaces, read-only mounts, private uid, rlimits) and the in-process audit hooks alone (plus
rlimits), so each layer is shown to hold by itself where it claims to.
"""

import dataclasses
import os
import socket
import time
import uuid

import pytest

from mixlab.evals import sandbox

ROOT = os.geteuid() == 0
KERNEL = ROOT and sandbox.guarantees()["network"].startswith("network namespace")
LAYERS = {
    "both": sandbox.Limits(),
    "kernel": sandbox.Limits(hooks=False),
    "hooks": sandbox.Limits(kernel=False),
}
needs_kernel = pytest.mark.skipif(not KERNEL, reason="needs root and unshare (the kernel layer)")


def _layers(*names):
    return pytest.mark.parametrize(
        "layer", [pytest.param(n, marks=needs_kernel) if n == "kernel" else n for n in names]
    )


def _run(source, layer, **limits):
    start = time.monotonic()
    result = sandbox.run(source, dataclasses.replace(LAYERS[layer], **limits))
    return result, time.monotonic() - start


def _uid_processes(uid):
    pids = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                pids.append(name)
        except OSError:
            pass
    return pids


def test_a_plain_program_runs_with_an_empty_environment_in_a_private_directory(monkeypatch):
    monkeypatch.setenv("MIXLAB_SANDBOX_SECRET", "hunter2")
    source = (
        "import os, sys\n"
        "print(sorted(os.environ), os.environ.get('MIXLAB_SANDBOX_SECRET'))\n"
        "open('note.txt', 'w').write('kept')\nprint(open('note.txt').read(), sorted(os.listdir('.')))\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    result, _ = _run(source, "both")
    assert result.passed and result.exit_reason == "ok" and result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "['LANG', 'PATH'] None"
    assert lines[1] == "kept ['main.py', 'note.txt']"
    assert "to stderr" in result.stderr_tail


@_layers("both", "kernel", "hooks")
def test_the_parents_environment_is_not_readable(monkeypatch, layer):
    monkeypatch.setenv("MIXLAB_SANDBOX_SECRET", "hunter2")
    source = f"""
import os
print(os.environ.get("MIXLAB_SANDBOX_SECRET"), os.getenv("HOME"))
try:
    print("hunter2" in open("/proc/{os.getpid()}/environ", "rb").read().decode(errors="replace"))
except OSError as e:
    print("unreadable", type(e).__name__)
"""
    result, _ = _run(source, layer)
    lines = result.stdout.splitlines()
    assert result.passed and lines[0] == "None None"
    # As a private uid; the hooks alone run as the caller, who may read its own /proc.
    if layer != "hooks" and KERNEL:
        assert lines[1].startswith("unreadable")


def test_a_failing_program_reports_its_error():
    result, _ = _run("raise ValueError('boom')", "both")
    assert not result.passed and result.exit_reason == "error" and result.exit_code == 1
    assert "ValueError: boom" in result.stderr_tail


@_layers("both", "kernel", "hooks")
def test_an_infinite_loop_times_out_on_cpu_time(layer):
    result, took = _run("while True:\n    pass\n", layer, timeout_s=8, cpu_s=1)
    assert result.exit_reason == "timeout" and took < 7  # the CPU limit, before the wall clock


@_layers("both", "kernel", "hooks")
def test_a_sleeping_program_times_out_on_the_wall_clock(layer):
    result, took = _run("import time\ntime.sleep(60)\n", layer, timeout_s=1)
    assert result.exit_reason == "timeout" and took < 4


@_layers("both", "kernel", "hooks")
def test_unbounded_allocation_is_a_memory_failure(layer):
    result, took = _run("x = bytearray(10**10)\n", layer)
    assert result.exit_reason == "memory" and "MemoryError" in result.stderr_tail and took < 5
    result, took = _run("x = []\nwhile True:\n    x.append(bytearray(10**7))\n", layer, memory_mb=256)
    assert result.exit_reason == "memory" and took < 5


@_layers("both", "kernel", "hooks")
def test_a_fork_bomb_is_contained_and_cleaned_up(layer):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result, took = _run(bomb, layer, timeout_s=2, processes=32)
    assert result.exit_reason == "timeout" and took < 5
    uid = result.isolation["uid"]
    if layer == "hooks":  # running as the caller, without a process limit: the hook must refuse to fork
        refused, _ = _run("import os\nos.fork()\n", layer)
        assert refused.exit_reason == "error" and "os.fork is not allowed" in refused.stderr_tail
    if layer != "hooks" and KERNEL:
        assert uid is not None and result.leftover_processes  # it did fork, and was killed
        assert _uid_processes(uid) == []  # not a single process of the bomb's uid is left
    # The machine is fine: the next program runs at once.
    after, took = _run("print(6 * 7)", "both")
    assert after.passed and after.stdout == "42\n" and took < 5


@_layers("both", "kernel", "hooks")
def test_writing_outside_the_working_directory_fails(layer):
    targets = [f"/tmp/outside-{uuid.uuid4().hex}", os.path.expanduser(f"~/x-{uuid.uuid4().hex}")]
    for path in targets:
        for how in (
            f"open({path!r}, 'w').write('x')",
            f"os.close(os.open({path!r}, os.O_CREAT | os.O_WRONLY))",
        ):
            result, took = _run(f"import os\n{how}\n", layer)
            assert result.exit_reason == "error" and took < 5
            assert "Read-only file system" in result.stderr_tail or "Permission" in result.stderr_tail
            assert not os.path.exists(path)


@_layers("both", "kernel", "hooks")
def test_a_socket_to_localhost_fails(layer):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        source = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        source += "s.sendall(b'x')\n"
        result, took = _run(source, layer)
        assert result.exit_reason == "error" and took < 5
        assert "unreachable" in result.stderr_tail or "no network" in result.stderr_tail
        with pytest.raises(TimeoutError):
            server.accept()  # nothing ever connected


def test_an_output_flood_is_cut_at_the_file_size_limit():
    result, took = _run("while True:\n    print('x' * 1000)\n", "both", file_mb=1)
    # Python ignores SIGXFSZ, so the write past the limit raises EFBIG instead of killing it.
    assert result.exit_reason == "error" and "File too large" in result.stderr_tail and took < 5
    assert 0 < len(result.stdout) <= 1 << 20


@needs_kernel
def test_the_kernel_layer_is_in_force_here():
    g, iso = sandbox.guarantees(), sandbox.run("").isolation
    assert g["network"].startswith("network namespace") and "read-only" in g["filesystem"]
    assert g["processes"].startswith("PID namespace") and g["user"].startswith("user namespace")
    assert g["ipc"].startswith("IPC namespace") and g["syscalls"].startswith("seccomp")
    # The memory line says what held: a cgroup where one could be made, else the fallback, named.
    assert g["memory"].startswith("cgroup" if iso["cgroup"] else "no cgroup")
    assert g["verdict"].startswith("pass = exit status 0 and the run's random token")
    assert g["errors"] == "none" or not iso["cgroup"]


def test_the_audit_hook_refuses_the_known_ways_around_it():
    # Best effort only (guarantees() says so): gc's view of the hook's closure, and a swapped __code__.
    for source, event in [
        ("import gc\ngc.get_objects()", "gc.get_objects"),
        ("def f(): pass\nf.__code__ = (lambda: 1).__code__", "__code__"),
    ]:
        result, _ = _run(source, "hooks")
        assert result.exit_reason == "error" and event in result.stderr_tail


def test_many_programs_run_in_parallel_in_order():
    results = sandbox.run_many([f"print({i} * {i})" for i in range(6)], workers=2)
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(6)]


def test_ignoring_the_cpu_limit_signal_is_still_a_timeout():
    source = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n"
    result, took = _run(source, "both", timeout_s=8, cpu_s=1)
    assert result.exit_reason == "timeout" and result.signal == 9 and took < 7
