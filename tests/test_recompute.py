"""`leaderboard check --recompute N`: sampled cells re-run with the current code must give every number again."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import dcrobench.runner
from dcrobench.cli import main
from dcrobench.recompute import measured, moved
from dcrobench.results import record_paths
from tests.helpers import TINY_PROTOCOL


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def published(tmp_path):
    results, out = tmp_path / "results", tmp_path / "lb"
    for method in ("random", "herding"):
        res = cli("run", "-m", method, "-d", "digits", "-p", TINY_PROTOCOL, "--seeds", "1", "--threads", "1",
                  "--no-progress", "--results", results)
        assert res.exit_code == 0, res.output
    res = cli("leaderboard", "publish", "--results", results, "--out", out)
    assert res.exit_code == 0, res.output
    return results, out


def test_recomputed_cells_reproduce_every_number(published):
    results, out = published
    res = cli("leaderboard", "check", "--results", results, "--out", out, "--protocol", TINY_PROTOCOL, "--recompute", 2)
    assert res.exit_code == 0, res.output
    assert res.stdout.count("every number reproduced") == 2 and "leaderboard ok" in res.stdout


def test_a_number_the_current_code_no_longer_gives_fails_the_check(published, monkeypatch):
    """The committed quick v4 records' cw and transfer-pgd numbers had moved with the code and check still passed."""
    results, out = published
    build = dcrobench.runner.build_model
    monkeypatch.setattr(dcrobench.runner, "build_model", lambda res, protocol, seed: build(res, protocol, seed + 1))
    res = cli("leaderboard", "check", "--results", results, "--out", out, "--protocol", TINY_PROTOCOL, "--recompute", 1,
              "--cheapest")
    assert res.exit_code == 1
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert lines and all("moved:" in line and "(re-run with the current code)" in line for line in lines)
    assert any("scores/robust moved" in line or "standard/clean_acc moved" in line for line in lines)


def test_records_that_cannot_be_rerun_are_named_in_a_note(published):
    results, out = published
    res = cli("leaderboard", "check", "--results", results, "--out", out, "--recompute", 1)
    assert res.exit_code == 0, res.output
    assert "2 record(s) cannot be re-run: 'tiny' is not a built-in protocol" in res.stdout


def test_moved_compares_every_measured_number(published):
    results, _ = published
    rec = json.loads(record_paths(results)[0].read_text())
    assert moved(rec, rec) == []
    other = json.loads(json.dumps(rec))
    other["adversarial"]["attacks"][next(iter(other["adversarial"]["attacks"]))] += 0.01
    other["compressed_set"]["content_hash"] = "0" * 64
    assert [line.split(" moved")[0] for line in moved(rec, other)] == [
        f"adversarial/attacks/{next(iter(rec['adversarial']['attacks']))}", "compressed_set/content_hash"]
    assert "scores/robust" in measured(rec) and any(k.startswith("standard/flags/") for k in measured(rec))


def test_the_committed_leaderboard_reproduces_from_the_current_code():
    """CI: the cheapest committed cell of a protocol version one can run here, re-run from empty caches, gives every
    number again (quick v4's extra-attack numbers had drifted from the code unnoticed)."""
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    res = cli("leaderboard", "check", "--results", repo / "leaderboard" / "records", "--out", repo / "leaderboard",
              "--recompute", 1, "--cheapest")
    assert res.exit_code == 0, res.output
    assert res.stdout.count("every number reproduced") == 1


def test_the_rerun_reads_the_data_where_the_records_did_not_in_its_empty_cache(published, monkeypatch):
    """The default data root lives under the cache, which a re-run swaps for an empty one: an MNIST cell re-run
    looked for its files there and failed."""
    import os
    from pathlib import Path

    from dcrobench.datasets import resolve_data_root
    from dcrobench.recompute import recompute
    from dcrobench.results import load_records

    results, _ = published
    expected, seen = resolve_data_root(None), []
    real_run = dcrobench.runner.run

    def run(req, regs, log):
        seen.append((req.data_root, os.environ["DCROBENCH_CACHE"]))
        return real_run(req, regs, log=log)

    monkeypatch.setattr(dcrobench.runner, "run", run)
    from dcrobench.protocol import load_protocol
    from dcrobench.results import Record

    records = [Record.from_json(r, r["_path"]) for r in load_records(results)]
    out = recompute(records, 1, protocol_files=[load_protocol(TINY_PROTOCOL)])
    assert out.problems == [] and len(seen) == 1
    data_root, cache = seen[0]
    assert data_root == expected and Path(cache) != expected.parent
