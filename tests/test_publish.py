"""`leaderboard publish` and `leaderboard check`, and the committed leaderboard/ folder."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dcrobench.cli import main
from dcrobench.grid import load_grid
from dcrobench.results import load_records, record_paths
from dcrobench.scheduler import run_sweep
from dcrobench.validation import check_records, record_errors
from tests.helpers import TINY_PROTOCOL

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pub")
    grid = {"name": "p", "protocol": TINY_PROTOCOL, "methods": ["random", "full"],
            "grid": [{"datasets": ["digits"], "budgets": [5, 10], "models": ["mlp"], "norms": ["linf"], "seeds": [0, 1]}]}
    (tmp / "g.yaml").write_text(yaml.safe_dump(grid))
    run_sweep(load_grid(tmp / "g.yaml"), tmp / "records", progress=False, log=lambda m: None)
    return tmp / "records"


def publish(records, out):
    return CliRunner().invoke(main, ["leaderboard", "publish", "--results", str(records), "--out", str(out)])


def check(records, out):
    return CliRunner().invoke(main, ["leaderboard", "check", "--results", str(records), "--out", str(out)])


def test_publish_writes_tables_and_both_plots(results, tmp_path):
    res = publish(results, tmp_path)
    assert res.exit_code == 0, res.output
    index = (tmp_path / "README.md").read_text()
    assert "[tiny v1](tiny-v1.md)" in index and "## Best robust score" in index and "Scores" not in index
    md = (tmp_path / "tiny-v1.md").read_text()
    assert "## tiny v1" in md and "### Scores, linf, mlp, 5 images per class" in md
    assert "| Coreset  | random" in md and "| Baseline | full" in md and "STD" in md and "ROB" in md
    assert "| Δ vs Random" in md and "] n=2 " in md and "sample std over seeds (ddof=1)" in md
    assert md.split("| Coreset  | random")[1].split("|")[3].strip() == "ref"  # Random is the reference
    assert "### Standard / robust score by budget, digits, mlp, linf" in md and "5/class" in md
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == ["tiny-v1-digits-linf-pareto.png", "tiny-v1-digits-linf-scatter.png", "tiny-v1-digits-mlp-budget.png"]
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "## Changelog" in index and "- [tiny v1]" in index
    assert check(results, tmp_path).exit_code == 0


def test_real_records_validate_against_the_schema(results):
    records = load_records(results)
    assert records and all(record_errors(r) == [] for r in records)
    broken = dict(records[0], scores={"standard": 1.5, "robust": 0.1})
    assert any("scores/standard" in e for e in record_errors(broken))


def test_check_fails_on_stale_markdown_invalid_records_and_hash_conflicts(results, tmp_path):
    records = tmp_path / "records"
    shutil.copytree(results, records, ignore=shutil.ignore_patterns("_stages"))
    out = tmp_path / "lb"
    assert publish(records, out).exit_code == 0
    assert check(records, out).exit_code == 0

    md = out / "tiny-v1.md"
    md.write_text(md.read_text().replace("ROB", "R0B", 1))
    res = check(records, out)
    assert res.exit_code == 1 and "out of date" in res.output
    assert publish(records, out).exit_code == 0

    path = record_paths(records)[0]
    rec = json.loads(path.read_text())
    conflict = dict(rec, protocol={**rec["protocol"], "hash": "0" * 12})
    (path.parent / ("conflict-" + path.name)).write_text(json.dumps(conflict))
    res = check(records, out)
    assert res.exit_code == 1 and "different protocol hashes" in res.output
    (path.parent / ("conflict-" + path.name)).unlink()

    bad = dict(rec, norm="l3")
    (path.parent / ("bad-" + path.name)).write_text(json.dumps(bad))
    res = check(records, out)
    assert res.exit_code == 1 and "norm" in res.output
    assert publish(records, out).exit_code == 2  # refuses to publish invalid records


def test_versions_are_archived_never_mixed(results, tmp_path):
    records = load_records(results)
    v2 = [dict(r, protocol={**r["protocol"], "version": 2}) for r in records[:2]]
    from dcrobench.leaderboard import publish_markdown

    md = publish_markdown(records + v2, "cmd")
    assert md.index("[tiny v2](tiny-v2.md) | latest") < md.index("[tiny v1](tiny-v1.md) | archived")
    assert md.index("# dcrobench leaderboard · tiny v2") < md.index("# dcrobench leaderboard · tiny v1")
    assert "tiny v1 is archived: v2 is the latest" in md
    assert "protocol version changed from v1; v1 archived" in md
    assert check_records(records + v2).problems() == []


def test_committed_leaderboard_is_up_to_date(monkeypatch):
    """CI's leaderboard check: the published markdown matches the committed records."""
    monkeypatch.chdir(REPO)
    assert record_paths(Path("leaderboard/records")), "leaderboard/records holds no records"
    res = CliRunner().invoke(main, ["leaderboard", "check", "--results", "leaderboard/records", "--out", "leaderboard"])
    assert res.exit_code == 0, res.output
