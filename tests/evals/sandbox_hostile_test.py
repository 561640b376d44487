"""Hostile completions scored through the HumanEval path (`scoring.score` on exec tasks), as root and as an
unprivileged uid: each attack, were it to work, would return the right answer and so score a pass.

Every attack is the body of `def add(a, b)` in a task built like HumanEval's (prompt, `check(candidate)`
tests, entry point), run under the kernel layer alone (`hooks=False`: the audit hook is best effort and
must not be what holds). A recorder around `sandbox.run` keeps each call's `Result` and wall time, so the
tests see what the program printed (it got as far as its attack: not a vacuous failure) and what the
launcher measured. The unprivileged run happens in a subprocess that prepares as root (a private mount
namespace exposing the interpreter under 0700 /root, as a user's own Python would be), then drops to uid
65534 for good before scoring.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from mixlab.evals import humaneval, sandbox, scoring
from mixlab.evals.tasks import CODE_STOPS, Task
from tests.evals import hostile

LIMITS = sandbox.Limits(hooks=False, timeout_s=3, cpu_s=3, memory_mb=256, processes=32)
CAN_DROP = os.geteuid() == 0


class _Host:
    """What the attacks aim at on the host: a 0777 unix socket in /tmp, an abstract one, a TCP port and a
    world-readable file in /tmp; each server counts what reached it."""

    def __init__(self):
        tag = uuid.uuid4().hex[:12]
        self.path = f"/tmp/mixlab-hostile-{tag}.sock"
        self.abstract = f"mixlab-hostile-{tag}"
        self.secret = f"/tmp/mixlab-hostile-{tag}.txt"
        self.marker = f"mixlab-hostile-marker-{tag}"
        self.shm_key = int(tag[:6], 16) + 1
        self.accepted = []
        with open(self.secret, "w") as f:
            f.write("host secret")
        os.chmod(self.secret, 0o644)
        self.servers = [socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX), socket.socket()]
        self.servers[0].bind(self.path)
        os.chmod(self.path, 0o777)
        self.servers[1].bind("\0" + self.abstract)
        self.servers[2].bind(("127.0.0.1", 0))
        self.port = self.servers[2].getsockname()[1]
        for s in self.servers:
            s.listen(4)
            s.settimeout(0.2)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, server):
        while server.fileno() != -1:
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            self.accepted.append(server.family)
            conn.sendall(b"host data")
            conn.close()

    def close(self):
        for s in self.servers:
            s.close()
        for p in (self.path, self.secret):
            os.unlink(p)

    def params(self, evaluator_pid):
        return {
            "path": self.path,
            "abstract": self.abstract,
            "secret": self.secret,
            "port": self.port,
            "marker": self.marker,
            "shm_key": self.shm_key,
            "evaluator_pid": evaluator_pid,
        }


@pytest.fixture(scope="module")
def host():
    h = _Host()
    yield h
    h.close()


def _tasks(completions):
    """One HumanEval-like task per attack; its docstring names it, so the fake generator tells them apart."""
    return [
        Task(
            id=f"hostile/{name}",
            prompt=f'def add(a, b):\n    """{name}"""\n',
            kind="exec",
            suite="humaneval",
            tests="def check(candidate):\n    assert candidate(2, 3) == 5\n",
            entry_point="add",
            dimension="programming",
            stop=CODE_STOPS,
        )
        for name in completions
    ]


def _score_recording(completions, limits):
    """scoring.score over the attacks; {name: {"score", "reason", "stdout", "wall_s", "peak_mb", ...}}."""
    runs, real_run = {}, sandbox.run

    def recording_run(source, limits=sandbox.DEFAULT_LIMITS):
        start = time.monotonic()
        result = real_run(source, limits)
        runs[source] = (result, time.monotonic() - start)
        return result

    sandbox.run = recording_run
    try:
        tasks = _tasks(completions)
        by_prompt = {t.prompt: completions[t.id.split("/")[1]] for t in tasks}

        def generate(prompts, *, num_samples, **_):
            return [[by_prompt[p]] * num_samples for p in prompts]

        results = scoring.score(tasks, generate, limits=limits, workers=2)
    finally:
        sandbox.run = real_run
    out = {}
    for t, item in zip(tasks, results, strict=True):
        result, wall = next(v for src, v in runs.items() if t.prompt in src)
        out[t.id.split("/")[1]] = {
            "score": item.score,
            "reason": result.exit_reason,
            "stdout": result.stdout,
            "stderr": result.stderr_tail[-600:],
            "wall_s": wall,
            "peak_mb": result.memory_peak_mb,
            "exit_code": result.exit_code,
            "finished": result.finished,
            "isolation": result.isolation,
        }
    return out


# Run by the unprivileged subprocess: prepare as root, drop to 65534, score, print the outcome as JSON.
_AS_NOBODY = r"""
import json, sys
from tests.evals import hostile, sandbox_hostile_test as t
hostile.expose_interpreter()
hostile.drop_to(65534)
completions, limits = json.load(sys.stdin)
print(json.dumps(t._score_recording(completions, t.sandbox.Limits(**limits))))
"""


def _score_as_nobody(completions, limits):
    proc = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, "mixlab-hostile-evaluator"],
        input=json.dumps([completions, {k: getattr(limits, k) for k in sandbox.Limits.__dataclass_fields__}]),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module", params=["caller", "nobody"])
def got(request, host):
    """Every attack scored once per caller, this process (root here) and uid 65534: a few seconds each."""
    iso = sandbox.run("").isolation
    if not iso["namespaces"]:
        pytest.skip(f"no kernel layer on this machine to show: {'; '.join(iso['errors'])}")
    if request.param == "nobody" and not CAN_DROP:
        pytest.skip("not root: cannot drop to uid 65534 (the 'caller' run is the unprivileged one)")
    completions = hostile.completions(host.params(os.getpid()))
    if request.param == "caller":
        return _score_recording(completions, LIMITS)
    return _score_as_nobody(completions, LIMITS)


def test_a_correct_completion_still_passes(got):
    assert got["control"]["score"] == 1.0 and got["control"]["reason"] == "ok", got["control"]
    assert got["control"]["isolation"]["namespaces"] and got["control"]["isolation"]["root"]


@pytest.mark.parametrize("name", ["system_exit", "os_exit"])
def test_exiting_with_status_0_before_the_tests_end_fails(got, name):
    assert got[name]["score"] == 0.0 and got[name]["exit_code"] == 0 and not got[name]["finished"]
    assert "never returned" in got[name]["stderr"]


@pytest.mark.parametrize("name", ["memfd", "sysv_shm", "spread"])
def test_memory_is_bounded_for_all_processes_together(got, name):
    r = got[name]
    assert r["score"] == 0.0 and r["reason"] in ("memory", "error"), r
    allocated = [int(x) for x in r["stdout"].split() if x.isdigit()]
    assert max(allocated, default=0) <= (LIMITS.memory_mb + 64) << 20, r["stdout"][-300:]
    if r["isolation"]["cgroup"]:
        assert r["reason"] == "memory" and r["peak_mb"] <= LIMITS.memory_mb + 1, r
    elif name == "spread":
        assert r["reason"] == "memory", r  # the init's watchdog
    else:
        assert "refused" in r["stdout"], r  # seccomp: no memfd, no SysV shm without a cgroup


def test_sysv_segments_die_with_the_run(got, host):
    assert got["sysv_shm"]["stdout"]  # it did make segments (or was refused), then ended
    with open("/proc/sysvipc/shm") as f:
        keys = [int(line.split()[0]) for line in f.readlines()[1:]]
    assert not set(keys) & {host.shm_key + i for i in range(64)}


def test_host_sockets_files_and_network_are_unreachable(got, host):
    for name in ("unix_socket", "tcp"):
        assert got[name]["score"] == 0.0 and got[name]["reason"] == "error", got[name]
    assert got["unix_socket"]["stdout"].count("unreachable") == 2
    assert "no host file" in got["unix_socket"]["stdout"] and "tcp" in got["tcp"]["stdout"]
    assert host.accepted == []  # nothing ever connected to the host's servers


def test_proc_lists_only_the_sandbox(got):
    r = got["proc"]
    assert r["score"] == 0.0, r
    assert json.loads(r["stdout"].splitlines()[0]) == [1, 2]  # the init and the program


def test_the_evaluator_cannot_be_signalled(got):
    assert got["kill"]["score"] == 0.0 and "ProcessLookupError" in got["kill"]["stdout"], got["kill"]


def test_no_process_survives_and_the_call_returns_in_time(got, host):
    r = got["setsid"]
    assert r["reason"] == "timeout" and r["wall_s"] < LIMITS.timeout_s + 2, r
    assert "forked" in r["stdout"]
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if host.marker.encode() in f.read():
                    survivors.append(pid)
        except OSError:
            pass
    assert survivors == []


def test_exits_fail_on_real_humaneval_under_the_default_limits():
    task = humaneval.load(limit=1)
    attempts = ["    raise SystemExit(0)\n", "    import os\n    os._exit(0)\n", task[0].solution]

    def generate(prompts, *, num_samples, **_):
        return [attempts for _ in prompts]

    (item,) = scoring.score(task, generate, num_samples=3)
    assert item.correct == 1 and item.exit_reasons == ["error", "error", "ok"]
