"""Sweeps: resume after a kill without redoing stages, Ray = local, status."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner

from dcrobench.cli import main
from dcrobench.grid import load_grid
from dcrobench.results import load_records, record_paths
from dcrobench.scheduler import run_sweep
from tests.helpers import TINY_PROTOCOL

VOLATILE = ("cost", "env", "created_at", "_path")


def write_grid(tmp_path, **over):
    grid = {"name": "t", "protocol": TINY_PROTOCOL, "methods": ["random", "full"],
            "grid": [{"datasets": ["digits"], "budgets": [5, 10], "models": ["mlp"], "norms": ["linf", "l2"], "seeds": [0, 1]}]}
    grid.update(over)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def comparable(results_dir):
    out = {}
    for rec in load_records(results_dir):
        key = (rec["method"]["name"], rec["budget"]["ipc"], rec["norm"], rec["seed"])
        out[key] = {k: v for k, v in rec.items() if k not in VOLATILE}
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    grid = load_grid(write_grid(tmp))
    summary = run_sweep(grid, tmp / "results", progress=False, log=lambda m: None)
    assert summary["ran"] == 6 and summary["loaded"] == {}
    assert summary["failed"] == 0 and summary["failures"] == []
    return tmp / "results", summary


def stage_files(results):
    """Finished stage files and their seals (an evaluation's ``.partial.pt`` checkpoint is progress, removed when
    it finishes)."""
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (results / "_stages").rglob("*")
            if p.is_file() and not p.name.endswith((".partial.pt", ".partial.pt.seal"))}


def test_killed_sweep_resumes_without_redoing_any_finished_stage(tmp_path, uninterrupted):
    ref_results, ref_summary = uninterrupted
    grid_file = write_grid(tmp_path)
    results = tmp_path / "results"
    env = dict(os.environ, DCROBENCH_TEST_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "dcrobench.cli", "sweep", str(grid_file), "--results", str(results),
                             "--threads", "1", "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240

    def recorded() -> int:
        return len(record_paths(results)) if results.exists() else 0

    # Kill mid-task: an odd count means a task has written its linf record but not its l2 one.
    while time.time() < deadline and not (recorded() >= 3 and recorded() % 2 == 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = recorded()
    assert 3 <= done_before < 12, "the kill should land mid-sweep"
    before = stage_files(results)
    assert before

    summary = run_sweep(load_grid(grid_file), results, progress=False, log=lambda m: None)
    after = stage_files(results)
    assert all(after[p] == before[p] for p in before), "a finished stage was rewritten"
    if done_before % 2 == 1:  # the interrupted task's stages are picked up, not recomputed
        assert sum(summary["loaded"].values()) > 0
    total_computed = sum(ref_summary["computed"].values())
    assert sum(summary["computed"].values()) < total_computed
    assert comparable(results) == comparable(ref_results)  # same numbers as the uninterrupted sweep


def test_an_extra_seed_reuses_every_existing_stage(tmp_path, uninterrupted):
    ref_results, _ = uninterrupted
    import shutil

    results = tmp_path / "results"
    shutil.copytree(ref_results, results)
    grid = write_grid(tmp_path, grid=[{"datasets": ["digits"], "budgets": [5, 10], "models": ["mlp"],
                                       "norms": ["linf", "l2"], "seeds": [0, 1, 2]}])
    summary = run_sweep(load_grid(grid), results, progress=False, log=lambda m: None)
    assert summary["already_done"] == 6 and summary["ran"] == 3  # random b5, random b10, full for seed 2
    assert summary["loaded"] == {}  # nothing of seeds 0-1 is even loaded
    assert summary["computed"]["standard"] == 3 and summary["computed"]["adversarial"] == 6


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_parallel_executors_give_the_sequential_records(tmp_path, uninterrupted, executor):
    """Two workers (a local process pool, or Ray) write the records the in-process sweep wrote."""
    if executor == "ray":
        pytest.importorskip("ray")
    ref_results, _ = uninterrupted
    results = tmp_path / "results"
    summary = run_sweep(load_grid(write_grid(tmp_path)), results, executor=executor, workers=2, threads=1,
                        progress=False, log=lambda m: None)
    assert summary["ran"] == 6
    assert comparable(results) == comparable(ref_results)


def test_status_lists_done_and_missing(tmp_path, uninterrupted):
    ref_results, _ = uninterrupted
    grid = write_grid(tmp_path, grid=[{"datasets": ["digits"], "budgets": [5, 10], "models": ["mlp"],
                                       "norms": ["linf", "l2"], "seeds": [0, 1, 2]}])
    res = CliRunner().invoke(main, ["status", str(grid), "--results", str(ref_results)])
    assert res.exit_code == 0, res.output
    assert "12 of 18 cells done, 6 missing" in res.output


def test_grid_errors_are_clear(tmp_path):
    bad = write_grid(tmp_path, method=["random"])
    res = CliRunner().invoke(main, ["sweep", str(bad), "--results", str(tmp_path / "r")])
    assert res.exit_code == 2 and "Did you mean: methods" in res.output
    res = CliRunner().invoke(main, ["sweep", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "not found" in res.output
