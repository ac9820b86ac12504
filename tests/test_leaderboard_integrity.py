"""Issue 13, defects 6 and 7: the leaderboard counts every valid record once, in a cell of one protocol hash,
lists every invalid record with its reason (never a traceback), and `check` is independent of the folder it runs
from and of how the paths are spelled. Records are committed ones (leaderboard/records), copied and edited."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcrobench.cli import main
from dcrobench.protocol import load_protocol
from dcrobench.results import load_records
from dcrobench.validation import record_errors

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "leaderboard" / "records"
SUBSET = ["random_mnist5k_b10_mlp_linf_s0", "random_mnist5k_b10_mlp_linf_s1", "random_mnist5k_b50_mlp_linf_s0",
          "full_mnist5k_full_mlp_linf_s0", "herding_mnist5k_b10_mlp_linf_s0"]
PNG = b"\x89PNG\r\n\x1a\n"


def committed_path(stem: str) -> Path:
    (path,) = COMMITTED.glob(f"quick-v1/mnist5k/*/{stem}_*.json")
    return path


def committed(stem: str = SUBSET[0]) -> dict:
    return json.loads(committed_path(stem).read_text())


@pytest.fixture
def results(tmp_path) -> Path:
    """A small results folder: five committed records at their committed relative paths."""
    root = tmp_path / "results"
    for stem in SUBSET:
        src = committed_path(stem)
        dst = root / src.relative_to(COMMITTED)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return root


def put(root: Path, name: str, content) -> Path:
    path = root / "quick-v1" / "mnist5k" / "extra" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_error_lines(res, code: int) -> list[str]:
    """Exit ``code``, no traceback, and every stderr line one `error: ` line."""
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), res.stderr
    return lines


def row(md: str, method: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith(f"| {method} ")]


# --- defect 6: render ----------------------------------------------------------------------------------------------
def test_render_never_mixes_protocol_hashes_in_one_cell(results):
    rec = committed("random_mnist5k_b10_mlp_linf_s1")
    path = next(results.rglob("random_mnist5k_b10_mlp_linf_s1_*.json"))
    path.unlink()  # seed 1 now exists only under another protocol hash, with another score
    put(results, "random-other-hash.json", dict(rec, protocol={**rec["protocol"], "hash": "0" * 12},
                                                scores={**rec["scores"], "standard": 0.99},
                                                standard={**rec["standard"], "clean_acc": 0.99}))
    res = cli("leaderboard", "render", "--results", str(results))
    assert res.exit_code == 0, res.output
    rows = [r for r in row(res.stdout, "random") if "| 10 " in r]
    assert len(rows) == 2, res.stdout  # one row per hash, each labelled with its hash
    assert any("000000000000" in r for r in rows) and any(rec["protocol"]["hash"] in r for r in rows)
    assert all(r.rstrip().endswith(" 1 |") for r in rows)  # one seed each, never averaged together
    res = cli("leaderboard", "check", "--results", str(results), "--out", str(results.parent / "lb"))
    assert res.exit_code == 1 and "different protocol hashes" in res.stderr


def test_duplicate_record_is_counted_once_and_refused_by_check(results, tmp_path):
    original = next(results.rglob("random_mnist5k_b10_mlp_linf_s0_*.json"))
    copy = put(results, "copy-of-random.json", original.read_bytes())
    res = cli("leaderboard", "render", "--results", str(results))
    assert res.exit_code == 0, res.output
    (rand10,) = [r for r in row(res.stdout, "random") if "| 10 " in r]
    assert rand10.rstrip().endswith(" 2 |")  # seeds 0 and 1, the copy of seed 0 counted once
    assert "warning:" in res.stderr and copy.name in res.stderr and original.name in res.stderr

    out = tmp_path / "lb"
    res = cli("leaderboard", "publish", "--results", str(results), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "5 records" in (out / "README.md").read_text()
    assert copy.name in res.stderr
    res = cli("leaderboard", "check", "--results", str(results), "--out", str(out))
    (line,) = assert_error_lines(res, 1)
    assert "duplicate" in line and copy.name in line and original.name in line


def test_record_without_schema_version_is_invalid_not_ignored(results, tmp_path):
    rec = committed()
    del rec["schema_version"]
    bad = put(results, "no-version.json", rec)
    res = cli("leaderboard", "render", "--results", str(results))
    assert res.exit_code == 0 and bad.name in res.stderr and "schema_version" in res.stderr
    res = cli("leaderboard", "check", "--results", str(results), "--out", str(tmp_path / "lb"))
    lines = assert_error_lines(res, 1)
    assert any(bad.name in line and "schema_version" in line for line in lines)


def test_out_of_range_robust_score_is_not_rendered(results):
    rec = committed("herding_mnist5k_b10_mlp_linf_s0")
    path = next(results.rglob("herding_mnist5k_b10_mlp_linf_s0_*.json"))
    path.write_text(json.dumps(dict(rec, scores={**rec["scores"], "robust": 1.7})))
    res = cli("leaderboard", "render", "--results", str(results))
    assert res.exit_code == 0, res.output
    assert "170.00" not in res.stdout and not row(res.stdout, "herding")
    assert path.name in res.stderr and "scores/robust" in res.stderr


# --- defect 7: check -----------------------------------------------------------------------------------------------
def _bad_records():
    rec = committed()
    counts = rec["budget"]["per_class_counts"]
    return {
        "bad-json": b'{"schema_version": 1,',
        "non-utf8": b'{"schema_version": 1, "dataset": "mnist\xff5k"}',
        "not-an-object": [rec],
        "nan-score": json.dumps(dict(rec, scores={**rec["scores"], "robust": float("nan")})).encode(),
        "schema-version-3": dict(rec, schema_version=3),
        "schema-version-string": dict(rec, schema_version="1"),
        "schema-version-true": dict(rec, schema_version=True),
        "schema-invalid-norm": dict(rec, norm="l3"),
        "v2-fields-under-v1": dict(rec, compressed_set={"content_hash": "0" * 16, "from_file": False},
                                   method={**rec["method"], "source": {"distribution": "x", "version": "1", "plugin": "x"}}),
        "standard-score-above-1": dict(rec, scores={**rec["scores"], "standard": 1.5}),
        "counts-exceed-ipc": dict(rec, budget={**rec["budget"], "per_class_counts": [c + 140 for c in counts],
                                               "total": sum(counts) + 1400}),
        "robust-not-worst-case": dict(rec, adversarial={**rec["adversarial"], "robust_acc": rec["adversarial"]["clean_acc"]}),
        "score-not-the-evaluation": dict(rec, scores={**rec["scores"], "standard": rec["scores"]["standard"] / 2}),
    }


@pytest.mark.parametrize("case", sorted(_bad_records()))
def test_check_lists_an_invalid_record_in_one_line_without_traceback(results, tmp_path, case):
    out = tmp_path / "lb"
    assert cli("leaderboard", "publish", "--results", str(results), "--out", str(out)).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = put(results, f"{case}.json", _bad_records()[case])
    (line,) = assert_error_lines(cli("leaderboard", "check", "--results", str(results), "--out", str(out)), 1)
    assert line.startswith(f"error: {bad}: ")
    res = cli("leaderboard", "publish", "--results", str(results), "--out", str(out))
    (line,) = assert_error_lines(res, 2)
    assert str(bad) in line
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing published
    res = cli("leaderboard", "render", "--results", str(results))
    assert res.exit_code == 0 and str(bad) in res.stderr and "| random " in res.stdout


def test_budget_counts_above_ipc_are_rejected():
    rec = committed()
    assert record_errors(rec) == []
    counts = [144] * 9 + [142]  # the 1,438 digits images recorded at budget 5
    errs = record_errors(dict(rec, budget={**rec["budget"], "ipc": 5, "per_class_counts": counts, "total": 1438}))
    assert errs and all("budget" in e for e in errs) and any("exceed" in e for e in errs)
    full = committed("full_mnist5k_full_mlp_linf_s0")
    assert full["budget"]["ipc"] is None and record_errors(full) == []


def test_v1_and_v2_records_are_both_valid_and_aggregate_together(results):
    v1 = committed("random_mnist5k_b10_mlp_linf_s1")
    (v2_path,) = COMMITTED.glob("quick-v2/mnist5k/random/random_mnist5k_b10_mlp_linf_s1_*.json")
    measured = json.loads(v2_path.read_text())  # v2 evaluations carry per-point flags
    v2 = dict(v1, schema_version=2, compressed_set={"content_hash": "3fa2c1d0" * 2, "from_file": False},
              standard=measured["standard"], adversarial=measured["adversarial"], scores=measured["scores"],
              method={**v1["method"], "source": {"distribution": "dcrobench", "version": "0.1.0", "plugin": "baselines"}},
              cost={**v1["cost"], "proxy_s": 0.0,
                    "cached": {"compress": False, "standard": False, "adversarial": True, "attack": False}})
    assert record_errors(v2) == []
    assert any("source" in e for e in record_errors(dict(v2, method=v1["method"])))
    assert any("compressed_set" in e for e in record_errors({k: v for k, v in v2.items() if k != "compressed_set"}))
    next(results.rglob("random_mnist5k_b10_mlp_linf_s1_*.json")).write_text(json.dumps(v2))
    res = cli("leaderboard", "render", "--results", str(results))
    assert res.exit_code == 0 and res.stderr == "", res.output
    (rand10,) = [r for r in row(res.stdout, "random") if "| 10 " in r]
    assert rand10.rstrip().endswith(" 2 |")


def test_check_fails_on_a_missing_or_corrupt_plot(results, tmp_path):
    out = tmp_path / "lb"
    assert cli("leaderboard", "publish", "--results", str(results), "--out", str(out)).exit_code == 0
    pngs = sorted((out / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["quick-v1-mnist5k-linf-pareto.png", "quick-v1-mnist5k-linf-scatter.png",
                                      "quick-v1-mnist5k-mlp-budget.png"]
    assert all(p.read_bytes()[:8] == PNG for p in pngs)
    assert cli("leaderboard", "check", "--results", str(results), "--out", str(out)).exit_code == 0
    pngs[0].unlink()
    (line,) = assert_error_lines(cli("leaderboard", "check", "--results", str(results), "--out", str(out)), 1)
    assert pngs[0].name in line and "missing" in line
    pngs[0].write_text("not a png")
    (line,) = assert_error_lines(cli("leaderboard", "check", "--results", str(results), "--out", str(out)), 1)
    assert pngs[0].name in line and "PNG" in line


def test_check_is_independent_of_the_folder_and_of_path_spelling(results, tmp_path, monkeypatch):
    out = tmp_path / "lb"
    monkeypatch.chdir(tmp_path)
    assert cli("leaderboard", "publish", "--results", "results", "--out", "lb").exit_code == 0
    md = (out / "README.md").read_text()
    assert str(tmp_path) not in md
    assert "--out lb" not in md and "--results results" not in md
    assert cli("leaderboard", "check", "--results", "results", "--out", "lb").exit_code == 0
    monkeypatch.chdir(out)
    assert cli("leaderboard", "check", "--results", "../results", "--out", ".").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = cli("leaderboard", "check", "--results", str(results), "--out", str(out))
    assert res.exit_code == 0, res.output
    # moving both folders together keeps the leaderboard valid
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(str(results), moved / "results")
    shutil.move(str(out), moved / "lb")
    assert cli("leaderboard", "check", "--results", str(moved / "results"), "--out", str(moved / "lb")).exit_code == 0


def test_render_publish_and_check_share_their_defaults(results, tmp_path, monkeypatch):
    commands = main.commands["leaderboard"].commands
    defaults = {name: {p.name: p.default for p in cmd.params} for name, cmd in commands.items()}
    assert defaults["render"]["results_dir"] == defaults["publish"]["results_dir"] == defaults["check"]["results_dir"] \
        == "results"
    assert defaults["publish"]["out_dir"] == defaults["check"]["out_dir"] == "leaderboard"
    monkeypatch.chdir(tmp_path)  # holds results/, as `dcrobench run` writes it
    render = cli("leaderboard", "render")
    assert render.exit_code == 0 and "| random " in render.stdout
    assert cli("leaderboard", "publish").exit_code == 0
    res = cli("leaderboard", "check")
    assert res.exit_code == 0, res.output


def test_missing_results_folder_is_refused_by_publish_and_check(tmp_path):
    missing = tmp_path / "nothing-here"
    (line,) = assert_error_lines(cli("leaderboard", "publish", "--results", str(missing), "--out", str(tmp_path / "lb")), 2)
    assert str(missing) in line
    (line,) = assert_error_lines(cli("leaderboard", "check", "--results", str(missing), "--out", str(tmp_path / "lb")), 1)
    assert str(missing) in line
    assert not (tmp_path / "lb").exists()


def test_load_records_reports_unreadable_files_with_their_reason(results):
    put(results, "broken.json", b"{")
    with pytest.raises(Exception, match="broken.json"):
        load_records(results)
    errors: list = []
    records = load_records(results, errors=errors)
    assert len(records) == len(SUBSET) and len(errors) == 1 and "broken.json" in errors[0][0]


def test_leaderboard_and_plots_do_not_import_each_other():
    code = ("import sys, dcrobench.plots; assert 'dcrobench.leaderboard' not in sys.modules; "
            "import dcrobench.leaderboard")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --- issue: check re-derives what it can of a record, and knows a stale plot ----------------------------------------
QUICK_VERSION = load_protocol("quick").version  # the built-in quick's current version, whose records are committed
V4 = ["random_mnist5k_b10_mlp_l2_s0", "random_mnist5k_b10_mlp_linf_s0", "random_mnist5k_b10_mlp_l2_s1",
      "full_mnist5k_full_mlp_l2_s0"]


@pytest.fixture
def v4results(tmp_path) -> Path:
    """Committed records of the built-in quick's current version (schema 2 or later, with robustness curves)."""
    root = tmp_path / "v4results"
    for stem in V4:
        (src,) = COMMITTED.glob(f"quick-v{QUICK_VERSION}/mnist5k/*/{stem}_*.json")
        dst = root / src.relative_to(COMMITTED)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return root


def record_at(root: Path, stem: str) -> tuple[Path, dict]:
    (path,) = root.rglob(f"{stem}_*.json")
    return path, json.loads(path.read_text())


def check_lines(root: Path, out: Path, *extra: str) -> list[str]:
    """The error lines of a failing check (exit 1, each stderr line one `error:` line)."""
    return assert_error_lines(cli("leaderboard", "check", "--results", str(root), "--out", str(out), *extra), 1)


def about(path: Path, lines: list[str]) -> list[str]:
    """The lines about one record (an unpublished folder adds its own)."""
    return [line for line in lines if line.startswith(f"error: {path}: ")]


def of(lines: list[str], path: Path, field: str) -> list[str]:
    return [line for line in lines if line.startswith(f"error: {path}: {field}: ")]


def test_untouched_records_and_publish_pass_with_notes_for_what_cannot_be_re_derived(results, v4results, tmp_path):
    for root, out in ((results, tmp_path / "lb1"), (v4results, tmp_path / "lb4")):
        assert cli("leaderboard", "publish", "--results", str(root), "--out", str(out)).exit_code == 0
        res = cli("leaderboard", "check", "--results", str(root), "--out", str(out))
        assert res.exit_code == 0 and res.stderr == "", res.output
        assert all(png.read_bytes().count(b"dcrobench-data\x00sha256:") == 1 for png in (out / "plots").glob("*.png"))
    # quick v1 is no longer the built-in protocol: said once, not an error
    res = cli("leaderboard", "check", "--results", str(results), "--out", str(tmp_path / "lb1"))
    (note,) = [line for line in res.stdout.splitlines() if line.startswith("note: ")]
    assert note.startswith("note: quick v1: ε of 5 records not re-derived") and f"is now v{QUICK_VERSION}" in note


def test_check_re_derives_eps_from_the_protocol_and_dataset(v4results, tmp_path):
    path, rec = record_at(v4results, "random_mnist5k_b10_mlp_l2_s0")
    path.write_text(json.dumps(dict(rec, eps=1.0)))
    lines = check_lines(v4results, tmp_path / "lb")
    (line,) = of(lines, path, "eps")
    assert "1 in the record" in line and f"protocol quick v{QUICK_VERSION} gives 1.35504 for mnist5k l2" in line
    assert of(lines, path, "adversarial/eps_curve")  # the curve's radii are no longer multiples of it


def test_check_compares_eps_with_the_other_records_where_the_protocol_is_gone(results, tmp_path):
    path, rec = record_at(results, "random_mnist5k_b10_mlp_linf_s1")
    path.write_text(json.dumps(dict(rec, eps=0.3)))
    (line,) = about(path, check_lines(results, tmp_path / "lb"))  # no quick v1: 4 other records say 0.1
    assert line.startswith(f"error: {path}: eps: 0.3 in the record, but 4 other records of quick v1 · mnist5k · linf "
                           "have 0.1")


def test_check_re_derives_the_budget_from_the_set_counts(v4results, tmp_path):
    path, rec = record_at(v4results, "random_mnist5k_b10_mlp_l2_s0")
    path.write_text(json.dumps(dict(rec, budget={**rec["budget"], "ipc": 50})))
    (line,) = about(path, check_lines(v4results, tmp_path / "lb"))
    assert line.startswith(f"error: {path}: budget/ipc: 50 in the record, but ")
    assert "says 'b10'" in line and "per_class_counts hold at most 10 images per class" in line
    assert "compression/budget says 10" in line
    # moved to the path of budget 50 as well: the counts still say 10
    moved = path.with_name(path.name.replace("_b10_", "_b50_"))
    path.rename(moved)
    (line,) = about(moved, check_lines(v4results, tmp_path / "lb"))
    assert line.startswith(f"error: {moved}: budget/ipc: ") and "at most 10 images" in line and "path" not in line


def test_check_re_derives_the_cell_from_the_path(v4results, tmp_path):
    path, rec = record_at(v4results, "random_mnist5k_b10_mlp_l2_s0")
    moved = v4results / f"quick-v{QUICK_VERSION}" / "digits" / "random" / path.name.replace("_mnist5k_", "_digits_")
    moved.parent.mkdir(parents=True)
    path.rename(moved)
    lines = check_lines(v4results, tmp_path / "lb")
    (line,) = about(moved, lines)
    assert line.startswith(f"error: {moved}: dataset: 'mnist5k' in the record, but its path ") and "says 'digits'" in line
    # the record edited instead: its path, its compression block and its protocol's ε for digits disagree
    moved.rename(path)
    path.write_text(json.dumps(dict(rec, dataset="digits")))
    lines = check_lines(v4results, tmp_path / "lb")
    (line,) = of(lines, path, "dataset")
    assert "says 'mnist5k'" in line and "compression/dataset says 'mnist5k'" in line
    assert of(lines, path, "eps")
    # seed and norm from the file name
    path.write_text(json.dumps(rec))
    renamed = path.with_name(path.name.replace("_s0_", "_s7_"))
    path.rename(renamed)
    (line,) = about(renamed, check_lines(v4results, tmp_path / "lb"))
    assert line.startswith(f"error: {renamed}: seed: 0 in the record, but its path ") and "says 's7'" in line
    # a file name that is no cell's
    odd = renamed.with_name("my-random-run.json")
    renamed.rename(odd)
    (line,) = about(odd, check_lines(v4results, tmp_path / "lb"))
    assert line.startswith(f"error: {odd}: path: ") and path.name in line


def test_check_holds_the_eps_curve_below_clean_accuracy(v4results, tmp_path):
    path, rec = record_at(v4results, "random_mnist5k_b10_mlp_linf_s0")
    adv = rec["adversarial"]
    curve = [dict(p) for p in adv["eps_curve"]]
    curve[0]["robust_acc"] = min(1.0, adv["clean_acc"] + 0.1)  # 0.25 x eps: above the model's clean accuracy
    path.write_text(json.dumps(dict(rec, adversarial={**adv, "eps_curve": curve})))
    (line,) = about(path, check_lines(v4results, tmp_path / "lb"))
    assert line.startswith(f"error: {path}: adversarial/eps_curve: robust accuracy above the clean accuracy")
    assert "0.25×ε" in line
    # the point at 1 x eps is the robust accuracy itself
    curve = [dict(p) for p in adv["eps_curve"]]
    next(p for p in curve if p["multiple"] == 1.0)["robust_acc"] = adv["robust_acc"] + 0.01
    path.write_text(json.dumps(dict(rec, adversarial={**adv, "eps_curve": curve})))
    (line,) = about(path, check_lines(v4results, tmp_path / "lb"))
    assert line.startswith(f"error: {path}: adversarial/eps_curve: ") and "at 1×ε" in line
    # a curve with other multiples than the protocol sweeps
    curve = [dict(p) for p in adv["eps_curve"] if p["multiple"] != 2.0]
    path.write_text(json.dumps(dict(rec, adversarial={**adv, "eps_curve": curve})))
    (line,) = about(path, check_lines(v4results, tmp_path / "lb"))
    assert line.startswith(f"error: {path}: adversarial/eps_curve: ") and f"protocol quick v{QUICK_VERSION} sweeps" in line


def test_check_takes_protocol_files_for_protocols_that_are_not_built_in(v4results, tmp_path):
    import yaml

    from dcrobench.protocol import load_protocol
    from dcrobench.registry import registries

    raw = yaml.safe_load((REPO / "benchmarks" / "protocols" / "quick.yaml").read_text())
    (tmp_path / "custom.yaml").write_text(yaml.safe_dump(dict(raw, name="custom")))
    custom = load_protocol(str(tmp_path / "custom.yaml"))
    root = tmp_path / "custom-results"
    for src in v4results.rglob("*.json"):
        rec = json.loads(src.read_text())
        method = rec["method"]["name"]
        rec["protocol"] = {"name": "custom", "version": QUICK_VERSION,
                           "hash": custom.hash_for(method, registries().methods.get(method).protocol_blocks)}
        folder = src.parent.relative_to(v4results / f"quick-v{QUICK_VERSION}")  # the dataset and method folders
        dst = root / f"custom-v{QUICK_VERSION}" / folder / f"{src.stem.rsplit('_', 1)[0]}_{rec['protocol']['hash']}.json"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(json.dumps(dict(rec, eps=0.5) if "b10_mlp_linf_s0" in src.name else rec))
    lines = check_lines(root, tmp_path / "lb")  # without the file, the ε is compared with the other records' only
    assert not [line for line in lines if ": eps: " in line]
    lines = check_lines(root, tmp_path / "lb", "--protocol", str(tmp_path / "custom.yaml"))
    (line,) = [line for line in lines if ": eps: " in line]
    assert "b10_mlp_linf_s0" in line and f"protocol custom v{QUICK_VERSION} gives 0.1 for mnist5k linf" in line


def _without_text(png: bytes) -> bytes:
    """The PNG without its tEXt chunks."""
    import struct

    out, i = [png[:8]], 8
    while i < len(png):
        (length,) = struct.unpack(">I", png[i:i + 4])
        if png[i + 4:i + 8] != b"tEXt":
            out.append(png[i:i + 12 + length])
        i += 12 + length
    return b"".join(out)


def test_check_knows_a_plot_drawn_from_other_data(results, tmp_path):
    out = tmp_path / "lb"
    assert cli("leaderboard", "publish", "--results", str(results), "--out", str(out)).exit_code == 0
    drawn = {p: p.read_bytes() for p in (out / "plots").glob("*.png")}
    path, rec = record_at(results, "random_mnist5k_b10_mlp_linf_s1")  # a standard score changes
    path.write_text(json.dumps(dict(rec, scores={**rec["scores"], "standard": 0.99},
                                    standard={**rec["standard"], "clean_acc": 0.99})))
    assert cli("leaderboard", "publish", "--results", str(results), "--out", str(out)).exit_code == 0
    for p, data in drawn.items():  # the tables are published again, the plots kept
        p.write_bytes(data)
    lines = check_lines(results, out)
    assert len(lines) == 2 and all("plot out of date with the records (drawn from other data" in line for line in lines)
    # the scatter and budget plots draw standard scores; the Pareto plot draws only robust scores and costs
    assert sorted(line.split(": ")[1].rsplit("/", 1)[1] for line in lines) == [
        "quick-v1-mnist5k-linf-scatter.png", "quick-v1-mnist5k-mlp-budget.png"]
    assert all(f"run `dcrobench leaderboard publish --results {results} --out {out}`" in line for line in lines)
    # a plot without the digest of its data is stale too
    assert cli("leaderboard", "publish", "--results", str(results), "--out", str(out)).exit_code == 0
    pareto = out / "plots" / "quick-v1-mnist5k-linf-pareto.png"
    pareto.write_bytes(_without_text(pareto.read_bytes()))
    (line,) = check_lines(results, out)
    assert line.startswith(f"error: {pareto}: plot out of date") and "carries no digest" in line


def test_a_schema_1_record_cannot_carry_what_only_schema_2_defines():
    """Schema 1 leaves evaluations open: an eps_curve smuggled into a v1 record crashed check, publish and render."""
    from dcrobench.validation import record_errors

    path = next(Path(__file__).parent.parent.glob("leaderboard/records/quick-v1/mnist5k/random/*.json"))
    rec = json.loads(path.read_text())
    assert rec["schema_version"] == 1 and record_errors(rec) == []
    rec["adversarial"]["eps_curve"] = [{"multiple": 1, "eps": 0.1, "robust_acc": "x"}]
    assert record_errors(rec) == ["adversarial/eps_curve: schema_version 1 records carry no eps_curve (schema 2 defines it)"]
