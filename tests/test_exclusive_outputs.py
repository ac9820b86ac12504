"""Nothing lost: a record is created by exactly one process, a cell is computed by one process at a time, and no
command overwrites a file it did not create."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from click.testing import CliRunner

import dcrobench.registry
from dcrobench.cli import main
from dcrobench.errors import AlreadyRunningError, DcrobenchError
from dcrobench.fileio import claim
from dcrobench.grid import Task, task_cells
from dcrobench.hookspecs import hookimpl
from dcrobench.methods import CompressionMethod, select_per_class
from dcrobench.registry import build_registries
from dcrobench.results import record_path, write_record
from tests.helpers import TINY_PROTOCOL, score_record

RUN = ["run", "-d", "digits", "-m", "random", "-p", TINY_PROTOCOL, "--no-progress", "--threads", "1", "--seeds", "1"]
WRITERS = 6
FORK = multiprocessing.get_context("fork")  # a spawned child would import torch again, for seconds


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


# --- records are created exclusively ---------------------------------------------------------------------------
def _race_to_write(results: Path, robust: float, start, outcomes) -> None:
    record = score_record("random", 0, 0.5, robust)  # every writer: the same cell, its own numbers
    start.wait()
    try:
        write_record(results, record)
        outcomes.put((robust, "won"))
    except DcrobenchError as exc:
        outcomes.put((robust, str(exc)))


def test_racing_writers_of_one_record_exactly_one_wins_and_the_file_is_its(tmp_path):
    """Before: each writer checked that the file was missing, then replaced it: several won, the last one stayed."""
    start, outcomes = FORK.Barrier(WRITERS), FORK.Queue()
    writers = [FORK.Process(target=_race_to_write, args=(tmp_path, i / 100, start, outcomes)) for i in range(WRITERS)]
    for w in writers:
        w.start()
    results = dict(outcomes.get(timeout=60) for _ in writers)
    for w in writers:
        w.join(timeout=60)
    winners = [robust for robust, outcome in results.items() if outcome == "won"]
    assert len(winners) == 1, results
    path = record_path(tmp_path, score_record("random", 0, 0.5, 0.0).key)
    assert json.loads(path.read_text())["scores"]["robust"] == winners[0]
    assert all("refusing to overwrite existing record" in outcome for outcome in results.values() if outcome != "won")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left by a loser


# --- a cell is claimed before its work starts --------------------------------------------------------------------
def _hold(path: Path, held, release) -> None:
    with claim(path):
        held.set()
        release.wait(120)


def test_a_cell_being_computed_elsewhere_is_refused_at_once_naming_the_process(tmp_path):
    """Before: a second run of a running cell redid all its work, and one record replaced the other."""
    results = tmp_path / "results"
    ((_, path),) = task_cells(Task(TINY_PROTOCOL, "random", "digits", 10, 0, ("mlp",), ("linf",)), results)
    held, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(path, held, release))
    holder.start()
    try:
        assert held.wait(60)
        res = invoke(*RUN, "--results", str(results))
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        (line,) = error_lines(res.output)
        assert f"already running (pid {holder.pid})" in line and str(path) in line
        assert [p for p in results.rglob("*") if p.is_file()] == [path.with_name(path.name + ".lock")]  # no work
    finally:
        release.set()
        holder.join(timeout=60)
    assert not path.with_name(path.name + ".lock").exists()  # released when done


def test_the_claim_of_a_killed_process_does_not_block(tmp_path):
    results = tmp_path / "results"
    ((_, path),) = task_cells(Task(TINY_PROTOCOL, "random", "digits", 10, 0, ("mlp",), ("linf",)), results)
    held, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(path, held, release))
    holder.start()
    assert held.wait(60)
    holder.kill()
    holder.join(timeout=60)
    lock = path.with_name(path.name + ".lock")
    assert lock.read_text().strip() == str(holder.pid)  # left behind, naming a dead process
    res = invoke(*RUN, "--results", str(results))
    assert res.exit_code == 0, res.output
    assert path.is_file() and not lock.exists()


def test_one_process_cannot_claim_a_path_twice(tmp_path):
    with claim(tmp_path / "x.json"):
        with pytest.raises(AlreadyRunningError, match="already running"):
            with claim(tmp_path / "x.json"):
                pass
    with claim(tmp_path / "x.json"):  # released: free again
        pass


# --- compress and import-set: the output is created, never replaced -------------------------------------------------
class _OutAppears(CompressionMethod):
    """While it works, someone else writes the file `compress --out` is about to create."""

    name = "out-appears"
    kind = "selection"
    out: Path | None = None

    def compress(self, data, budget, seed, device):
        self.out.write_bytes(b"precious")
        return select_per_class(data, {c: data.class_indices(c)[:budget] for c in range(data.num_classes)})


class _Plugin:
    @staticmethod
    @hookimpl
    def register_methods():
        return [_OutAppears]


def test_compress_never_replaces_a_file_that_appeared_while_it_worked(tmp_path, monkeypatch):
    """Before: the check ran before the work and the write replaced whatever was there by then."""
    regs = build_registries(extra_plugins={"out_appears": _Plugin()})
    monkeypatch.setattr(dcrobench.registry, "registries", lambda: regs)
    monkeypatch.setattr(_OutAppears, "out", tmp_path / "set.pt")
    res = invoke("compress", "-m", "out-appears", "-d", "digits", "-b", "3", "-p", TINY_PROTOCOL,
                 "-o", str(tmp_path / "set.pt"))
    assert res.exit_code == 2, res.output
    (line,) = error_lines(res.output)
    assert "refusing to overwrite" in line
    assert (tmp_path / "set.pt").read_bytes() == b"precious"


# --- leaderboard render and publish -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    res = invoke(*RUN, "--results", str(folder))
    assert res.exit_code == 0, res.output
    return folder


def test_render_rewrites_its_own_file_and_refuses_others_unless_forced(results, tmp_path):
    out = tmp_path / "lb.md"
    for _ in range(2):  # the second time over its own output
        res = invoke("leaderboard", "render", "--results", str(results), "--out", str(out))
        assert res.exit_code == 0, res.output
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n")
    res = invoke("leaderboard", "render", "--results", str(results), "--out", str(notes))
    assert res.exit_code == 2 and len(error_lines(res.output)) == 1 and "--force" in res.output, res.output
    assert notes.read_text() == "# my notes\n"
    res = invoke("leaderboard", "render", "--results", str(results), "--out", str(notes), "--force")
    assert res.exit_code == 0 and notes.read_text() == out.read_text(), res.output


def test_render_refuses_a_published_index(results, tmp_path):
    """The published README.md starts like a rendered file but is publish's: render leaves it alone."""
    assert invoke("leaderboard", "publish", "--results", str(results), "--out", str(tmp_path), "--no-plots").exit_code == 0
    index = (tmp_path / "README.md").read_bytes()
    res = invoke("leaderboard", "render", "--results", str(results), "--out", str(tmp_path / "README.md"))
    assert res.exit_code == 2 and (tmp_path / "README.md").read_bytes() == index, res.output


def test_publish_rewrites_its_own_folder_and_refuses_others_unless_forced(results, tmp_path):
    site = tmp_path / "site"
    for _ in range(2):  # the second time into its own folder
        res = invoke("leaderboard", "publish", "--results", str(results), "--out", str(site), "--no-plots")
        assert res.exit_code == 0, res.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.html").write_text("<p>my page</p>")
    res = invoke("leaderboard", "publish", "--results", str(results), "--out", str(other), "--no-plots")
    assert res.exit_code == 2 and len(error_lines(res.output)) == 1 and "--force" in res.output, res.output
    assert [p.name for p in other.iterdir()] == ["index.html"] and "my page" in (other / "index.html").read_text()
    res = invoke("leaderboard", "publish", "--results", str(results), "--out", str(other), "--no-plots", "--force")
    assert res.exit_code == 0 and (other / "README.md").is_file(), res.output
