"""Ray as a cluster, not only in-process: a head node and a worker node started as separate processes on
127.0.0.1, a sweep run through ``--ray-address``, the worker node killed while one of its tasks is half
done, and the sweep still ending with exit 0 and every record exactly once.

Tests may only send traffic to loopback. Outside a network namespace ``ray start --node-ip-address=127.0.0.1``
still advertises the machine's other interface address, so the whole cluster (both nodes and the sweep,
which is the Ray driver) runs in a private network namespace that has nothing but ``lo``: a small holder
process made with ``unshare --net`` keeps it open, every command enters it with ``nsenter --net``, and when
the test ends (or dies: the holder watches its stdin) the holder kills every process left in it. Without
the ``ray`` command, ``unshare``/``nsenter`` or the right to make a namespace (root), the test is skipped,
saying why; a cluster that fails to start or a sweep that fails is a failure.

Ray 2.60 refuses clients without a token: the test writes one to a file of its own
(``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN_PATH``), never to ``~/.ray``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from dcrobench.aggregate import identity
from dcrobench.results import record_paths
from dcrobench.validation import check_results
from tests.helpers import TINY_PROTOCOL

pytestmark = pytest.mark.timeout(240)  # the limits below add up to 180 s; a normal run takes 30-50 s

#: 4 tasks (random, budgets 5 and 10, seeds 0 and 1), each writing a linf then an l2 record
GRID = {"name": "cluster", "protocol": TINY_PROTOCOL, "methods": ["random"],
        "grid": [{"datasets": ["digits"], "budgets": [5, 10], "models": ["mlp"], "norms": ["linf", "l2"],
                  "seeds": [0, 1]}]}
TASKS = 4
EXPECTED = {(b, norm, seed) for b in (5, 10) for norm in ("linf", "l2") for seed in (0, 1)}

START_TIMEOUT_S = 45  # one `ray start`
SWEEP_TIMEOUT_S = 90  # the whole sweep, kill included
HOLDER_LIFETIME_S = 600  # the namespace and everything in it go away after this even if the test hangs

# Runs inside the new network namespace: bring `lo` up, print a free port, wait until the test closes our
# stdin (or dies), then kill every process left in this namespace (only the test's can be in it).
HOLDER = r"""
import fcntl, os, select, signal, socket, struct, sys, time

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0))[:18])[1]  # SIOCGIFFLAGS
fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))  # SIOCSIFFLAGS: IFF_UP
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
print(probe.getsockname()[1], flush=True)
probe.close()
select.select([sys.stdin], [], [], float(sys.argv[1]))
me, ns = os.getpid(), os.readlink("/proc/self/ns/net")


def others():
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            try:
                if os.readlink(f"/proc/{name}/ns/net") == ns:
                    out.append(int(name))
            except OSError:
                pass
    return out


deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    pids = others()
    if not pids:
        break
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.05)
"""


def proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, process group) of a live process, None when it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[2]))


def program(pid: int) -> str:
    """The first word of a process's command line (a Ray worker's is its title, ``ray::<task>``)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[0]
    except OSError:
        return ""


class LoopbackNamespace:
    """A private network namespace with only ``lo`` (up), kept open by a holder process."""

    def __init__(self, holder: subprocess.Popen, port: int) -> None:
        self.holder, self.port = holder, port
        self.ns = os.readlink(f"/proc/{holder.pid}/ns/net")

    def command(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *argv]

    def pids(self) -> list[int]:
        """Every live process in the namespace but the holder."""
        out = []
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != self.holder.pid:
                try:
                    if os.readlink(f"/proc/{name}/ns/net") == self.ns and proc_stat(int(name)):
                        out.append(int(name))
                except OSError:
                    pass
        return out

    def close(self) -> list[int]:
        """Kill everything in the namespace; the pids that still had to be killed after the holder's sweep."""
        self.holder.stdin.close()
        try:
            self.holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.holder.kill()
            self.holder.wait()
        left = self.pids()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return left


@pytest.fixture
def loopback_ns():
    pytest.importorskip("ray")
    for tool in ("ray", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"no `{tool}` command: cannot run a Ray cluster on loopback only")
    holder = subprocess.Popen(["unshare", "--net", "--", sys.executable, "-c", HOLDER, str(HOLDER_LIFETIME_S)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = holder.stdout.readline().strip()
    if not line.isdigit():
        holder.kill()
        _, err = holder.communicate()
        pytest.skip(f"cannot make a private network namespace (needs root): {' '.join(err.split())[-300:]}")
    ns = LoopbackNamespace(holder, int(line))
    try:
        yield ns
    finally:
        left = ns.close()
        assert not left, f"processes outlived the namespace holder: {left}"


@pytest.fixture
def ray_dirs():
    """A short temp folder (Ray's unix socket paths must stay under 108 bytes), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="dcrray-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ray_start(ns: LoopbackNamespace, args: list[str], env: dict[str, str], log: Path) -> int:
    """``ray start ARGS`` in the namespace, in a session of its own; the process group of the node's daemons."""
    with open(log, "w") as out:
        proc = subprocess.Popen(ns.command(["ray", "start", *args]), env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "timeout"
    assert rc == 0, f"ray start {' '.join(args)} failed ({rc}):\n{log.read_text()[-3000:]}"
    return proc.pid


def node_processes(ns: LoopbackNamespace, pgid: int) -> set[int]:
    """The daemons of the node started in process group ``pgid`` and, recursively, their children (the Ray
    workers that run tasks, each in a process group of its own)."""
    stats = {pid: st for pid in ns.pids() if (st := proc_stat(pid))}
    found = {pid for pid, (_, group) in stats.items() if group == pgid}
    while True:
        more = {pid for pid, (parent, _) in stats.items() if parent in found} - found
        if not more:
            return found
        found |= more


def signal_node(ns: LoopbackNamespace, pgid: int, sig: int) -> set[int]:
    """Send ``sig`` to every process of the node (twice over: a child forked meanwhile gets it too)."""
    sent: set[int] = set()
    for _ in range(2):
        for pid in node_processes(ns, pgid) - sent:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            sent.add(pid)
    return sent


def half_done_task(node: set[int], results: Path) -> int | None:
    """A task process of the node that has written one of the records it claims and holds the claim on another."""
    tasks = {pid for pid in node if program(pid).startswith("ray::run_task_reported")}
    if not tasks or not results.exists():
        return None
    holding: dict[int, list[Path]] = {}
    for lock in results.rglob("*.json.lock"):
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid in tasks:
            holding.setdefault(pid, []).append(lock.with_name(lock.name[: -len(".lock")]))
    for pid, records in holding.items():
        done = [r.exists() for r in records]
        if any(done) and not all(done):
            return pid
    return None


def test_sweep_survives_losing_a_worker_node(tmp_path, ray_dirs, loopback_ns):  # the cluster goes before its folder
    ns = loopback_ns
    token = ray_dirs / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    (ray_dirs / "worker").mkdir()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_TMPDIR=str(ray_dirs),
               RAY_USAGE_STATS_ENABLED="0", DCROBENCH_TEST_THREADS="1",
               DCROBENCH_CACHE=str(tmp_path / "cache"))  # the Ray workers inherit the nodes' environment
    address = f"127.0.0.1:{ns.port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=80000000",
              "--disable-usage-stats"]

    ray_start(ns, ["--head", f"--port={ns.port}", "--include-dashboard=false", f"--temp-dir={ray_dirs / 'head'}",
                   *common], env, tmp_path / "head.log")
    worker_group = ray_start(ns, [f"--address={address}", *common], dict(env, RAY_TMPDIR=str(ray_dirs / "worker")),
                             tmp_path / "worker.log")
    raylets = [p for p in node_processes(ns, worker_group) if program(p).endswith("/raylet")]
    assert len(raylets) == 1, "the worker node has no raylet of its own"

    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    results = tmp_path / "results"
    sweep_log = tmp_path / "sweep.log"
    started = time.monotonic()
    with open(sweep_log, "w") as out:
        sweep = subprocess.Popen(ns.command([sys.executable, "-m", "dcrobench.cli", "sweep", str(grid), "--executor",
                                             "ray", "--ray-address", address, "--results", str(results), "--workers",
                                             "2", "--threads", "1", "--no-progress"]),
                                 env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        victim = None
        while victim is None and sweep.poll() is None and time.monotonic() - started < SWEEP_TIMEOUT_S:
            victim = half_done_task(node_processes(ns, worker_group), results)
            if victim is None:
                time.sleep(0.02)
                continue
            # freeze the node, then make sure the task is still half done: the kill lands mid-task, not after it
            node = signal_node(ns, worker_group, signal.SIGSTOP)
            if half_done_task(node, results) != victim:
                signal_node(ns, worker_group, signal.SIGCONT)
                victim = None
        assert victim is not None, (f"no task of the worker node was caught half done (sweep rc {sweep.poll()}):\n"
                                    f"{sweep_log.read_text()[-3000:]}")
        signal_node(ns, worker_group, signal.SIGKILL)  # the whole node at once: daemons, raylet, task workers
        killed_at = time.monotonic() - started
        rc = sweep.wait(timeout=max(1.0, SWEEP_TIMEOUT_S - killed_at))
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    output = sweep_log.read_text()
    assert not node_processes(ns, worker_group), "the worker node's processes survived the kill"
    assert rc == 0, f"the sweep failed after the worker node was lost ({killed_at:.0f} s in):\n{output[-4000:]}"
    assert f"{TASKS} run, 0 failed" in output, output  # the lost task was run again, not reported failed
    assert not [line for line in output.splitlines() if line.startswith(("failed:", "error:"))], output

    check = check_results(results)
    assert check.problems() == [], check.problems()
    found = [(k.budget, k.norm, k.seed) for k in map(identity, check.records)]
    assert sorted(found) == sorted(EXPECTED), "every cell exactly once"
    assert len(record_paths(results)) == len(EXPECTED)
