"""Sweeps survive failing tasks, and their worker processes never outlive the parent.

Failing tasks come from a small third-party plugin written to a temporary folder as an installed
distribution (``*.dist-info`` on ``sys.path``): worker processes (spawn) get the parent's
``sys.path``, so they load it from the entry points exactly like the parent does.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import dcrobench.tasks as tasks_mod
from dcrobench.cli import main
from dcrobench.errors import DcrobenchError
from dcrobench.grid import load_grid
from dcrobench.registry import registries
from dcrobench.results import record_paths
from dcrobench.scheduler import run_sweep
from dcrobench.workers import SweepInterrupted
from tests.helpers import TINY_PROTOCOL

FAILING_PLUGIN = '''
from dcrobench.hookspecs import hookimpl
from dcrobench.methods import CompressionMethod
from dcrobench.models import ModelSpec


class Explodes(CompressionMethod):
    name = "explodes"
    kind = "selection"

    def compress(self, data, budget, seed, device):
        raise ZeroDivisionError("compress blew up")


def _build(*args, **kwargs):
    raise RuntimeError("model build blew up")


@hookimpl
def register_methods():
    return [Explodes]


@hookimpl
def register_models():
    return [ModelSpec("explodes-model", _build)]
'''

OK_CELL = {"methods": ["random"], "datasets": ["digits"], "budgets": [5], "models": ["mlp"], "norms": ["linf"], "seeds": [0]}
# failing cells first: before the fix the first failure aborted the sweep and the good cell never ran
FAILING_GRID = [
    {**OK_CELL, "methods": ["explodes"]},  # MethodError (a DcrobenchError) from compress
    {**OK_CELL, "budgets": [500]},  # BudgetError: digits has 139 images in its smallest class
    {**OK_CELL, "models": ["explodes-model"]},  # a plain RuntimeError from a model plugin
    OK_CELL,
]


@pytest.fixture
def failing_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "explodes_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "explodes_plugin.py").write_text(FAILING_PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: explodes-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dcrobench]\nexplodes = explodes_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    registries.cache_clear()
    yield site
    registries.cache_clear()
    sys.modules.pop("explodes_plugin", None)


def write_grid(tmp_path, blocks, name="f"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "protocol": TINY_PROTOCOL, "grid": blocks}))
    return path


def _assert_failures_reported(failures):
    by_task = {f["cell"]: f for f in failures}
    assert len(by_task) == 3, failures
    assert all("(protocol tiny, models " in cell for cell in by_task)
    explodes = by_task["explodes/digits/b5/s0 (protocol tiny, models mlp, norms linf)"]
    assert "compress blew up" in explodes["error"]
    budget = by_task["random/digits/b500/s0 (protocol tiny, models mlp, norms linf)"]
    assert budget["type"] == "BudgetError" and "budget 500" in budget["error"]
    plain = by_task["random/digits/b5/s0 (protocol tiny, models explodes-model, norms linf)"]
    assert tuple(plain["task"]["models"]) == ("explodes-model",)
    assert plain["type"] == "RuntimeError" and "RuntimeError: model build blew up" in plain["error"]
    assert all("\n" not in f["error"] for f in failures)


def test_failing_tasks_are_reported_and_the_sweep_goes_on(tmp_path, failing_plugin):
    results = tmp_path / "results"
    res = CliRunner().invoke(main, ["sweep", str(write_grid(tmp_path, FAILING_GRID)), "--results", str(results),
                                    "--threads", "1", "--no-progress"])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert len(record_paths(results)) == 1  # the good cell ran after the failures
    errors = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3, res.output
    assert any("explodes/digits/b5/s0 (protocol tiny, models mlp, norms linf)" in e and "compress blew up" in e for e in errors)
    assert any("random/digits/b500/s0 (protocol tiny, models mlp, norms linf)" in e and "budget 500" in e for e in errors)
    assert any("random/digits/b5/s0 (protocol tiny, models explodes-model, norms linf)" in e
               and "RuntimeError: model build blew up" in e for e in errors)
    # each failure is also reported as it happens, one line naming its cell
    assert sum(line.startswith("failed: ") for line in res.output.splitlines()) == 3
    summary = next(line for line in res.output.splitlines() if line.startswith("grid f: 4 tasks, 0 already done"))
    assert "1 run" in summary and "3 failed" in summary


def test_failures_in_worker_processes_are_reported_and_the_sweep_goes_on(tmp_path, failing_plugin):
    results = tmp_path / "results"
    lines: list[str] = []
    summary = run_sweep(load_grid(write_grid(tmp_path, FAILING_GRID)), results, workers=2, threads=1,
                        progress=False, log=lines.append)
    assert summary["ran"] == 1 and summary["failed"] == 3, summary
    _assert_failures_reported(summary["failures"])
    assert len(record_paths(results)) == 1
    assert sum(line.startswith("failed: ") for line in lines) == 3


@pytest.mark.parametrize("exc", [KeyError("k"), ValueError("plain"), DcrobenchError("ours")])
def test_any_exception_from_a_task_in_process_is_contained(tmp_path, monkeypatch, exc):
    grid = load_grid(write_grid(tmp_path, [{**OK_CELL, "seeds": [0, 1, 2]}]))
    ran = []

    def fake_run_task(task, results_dir, device, threads):
        if task["seed"] == 0:
            raise exc
        ran.append(task["seed"])
        return {"task": task, "records": 1, "seconds": 0.0, "computed": {}, "loaded": {}}

    monkeypatch.setattr(tasks_mod, "run_task", fake_run_task)
    summary = run_sweep(grid, tmp_path / "r", progress=False, log=lambda m: None)
    assert ran == [1, 2] and summary["ran"] == 2 and summary["failed"] == 1
    (failure,) = summary["failures"]
    assert failure["cell"] == "random/digits/b5/s0 (protocol tiny, models mlp, norms linf)" and failure["type"] == type(exc).__name__


def test_sigterm_stops_an_in_process_sweep_instead_of_failing_one_task(tmp_path, monkeypatch):
    grid = load_grid(write_grid(tmp_path, [{**OK_CELL, "seeds": [0, 1]}]))
    ran = []

    def fake_run_task(task, results_dir, device, threads):
        ran.append(task["seed"])
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        return {"task": task, "records": 1, "seconds": 0.0, "computed": {}, "loaded": {}}

    monkeypatch.setattr(tasks_mod, "run_task", fake_run_task)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SweepInterrupted, match="SIGTERM") as err:
        run_sweep(grid, tmp_path / "r", progress=False, log=lambda m: None)
    assert err.value.signum == signal.SIGTERM and ran == [0]
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is the sweep's only while it runs


@pytest.mark.parametrize("args,message", [
    (["--workers", "0"], "error: --workers must be at least 1"),
    (["--workers", "-3"], "error: --workers must be at least 1"),
    (["--threads", "0"], "error: --threads must be at least 1"),
    (["--threads", "-1"], "error: --threads must be at least 1"),
])
def test_workers_and_threads_below_one_are_refused_before_any_work(tmp_path, args, message):
    results = tmp_path / "results"
    res = CliRunner().invoke(main, ["sweep", str(write_grid(tmp_path, [OK_CELL])), "--results", str(results),
                                    "--no-progress", *args])
    assert res.exit_code == 2
    assert res.output.strip() == message
    assert not results.exists()


# --- workers never outlive their parent ---------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has stopped running; only its exit status is left


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_workers_do_not_outlive_a_killed_parent(tmp_path, sig):
    grid = write_grid(tmp_path, [{**OK_CELL, "budgets": [5, 10], "norms": ["linf", "l2"], "seeds": [0, 1, 2]}])
    results = tmp_path / "results"
    env = dict(os.environ, DCROBENCH_TEST_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "dcrobench.cli", "sweep", str(grid), "--results", str(results),
                             "--workers", "2", "--threads", "1", "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        # wait until both workers exist and are at work (a stage of some task has been written)
        while time.time() < deadline and proc.poll() is None:
            workers = [c for c in _children(proc.pid) if _is_worker(c)]
            stages = results / "_stages"
            if len(workers) == 2 and stages.exists() and any(p.is_file() for p in stages.rglob("*")):
                break
            time.sleep(0.05)
        assert proc.poll() is None and len(workers) == 2, "the sweep should be mid-way with two workers"
        proc.send_signal(sig)
        gone_by = time.time() + 5
        while time.time() < gone_by and any(_alive(w) for w in workers):
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers), "a worker outlived its parent"
        rc = proc.wait(timeout=10)
        assert rc != 0
        if sig == signal.SIGTERM:
            err = proc.stderr.read()
            assert "Traceback" not in err
            assert any(line.startswith("error: ") and "SIGTERM" in line for line in err.splitlines()), err
        before = sorted(record_paths(results)) if results.exists() else []
        time.sleep(1.5)
        after = sorted(record_paths(results)) if results.exists() else []
        assert after == before, "a record was written after the parent died"
        assert len(after) < 12
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for w in workers:  # never leave orphans behind, even when the test fails
            if _alive(w) and _is_worker(w):
                os.kill(w, signal.SIGKILL)


def test_sigterm_inside_a_methods_compress_stops_the_sweep_and_is_not_a_method_failure(tmp_path, monkeypatch):
    """CompressionMethod.run wraps a method's exceptions into MethodError; the sweep's stop must pass through."""
    grid = load_grid(write_grid(tmp_path, [{**OK_CELL, "seeds": [0, 1]}]))
    method_cls = registries().methods.get("random")

    def compress(self, data, budget, seed, device):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this, inside run()'s try

    monkeypatch.setattr(method_cls, "compress", compress)
    with pytest.raises(SweepInterrupted, match="SIGTERM"):
        run_sweep(grid, tmp_path / "r", progress=False, log=lambda m: None)
    assert not record_paths(tmp_path / "r")
