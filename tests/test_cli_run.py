"""`dcrobench run / compress / leaderboard` end to end on the embedded digits with a seconds-scale protocol."""

import json

import pytest
import yaml
from click.testing import CliRunner

import dcrobench.runner as runner
from dcrobench.cli import main
from dcrobench.results import record_paths
from tests.helpers import TINY_PROTOCOL

BASE = ["run", "-d", "digits", "-p", TINY_PROTOCOL, "--no-progress", "--threads", "1"]


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def records(path):
    return record_paths(path)


def test_run_records_then_resumes_without_redoing(tmp_path):
    res = invoke(*BASE, "-m", "random", "--seeds", "2", "--results", str(tmp_path))
    assert res.exit_code == 0, res.output
    files = records(tmp_path)
    assert len(files) == 2
    rec = json.loads(files[0].read_text())
    assert rec["schema_version"] == 3 and rec["protocol"]["name"] == "tiny"
    assert rec["budget"] == {"ipc": 10, "per_class_counts": [10] * 10, "total": 100, "weighted": False}
    for part in ("standard", "adversarial"):
        assert 0 <= rec[part]["robust_acc"] <= rec[part]["autoattack_acc"] <= rec[part]["clean_acc"] <= 1
        assert set(rec[part]["attacks"]) == {"pgd", "apgd-ce", "apgd-dlr"}
    assert rec["scores"] == {"standard": rec["standard"]["clean_acc"], "robust": rec["adversarial"]["robust_acc"]}
    assert set(rec["cost"]) == {"compress_s", "proxy_s", "train_s", "eval_s", "surrogate_s", "peak_mem_mb", "cached"}
    assert rec["cost"]["surrogate_s"] == 0.0  # no transfer attack ran
    assert rec["env"]["device"] == "cpu" and rec["created_at"]
    assert "ROBUST SCORE" in res.output  # summary table
    before = {f: f.read_bytes() for f in files}
    again = invoke(*BASE, "-m", "random", "--seeds", "2", "--results", str(tmp_path))
    assert again.exit_code == 0 and "already recorded" in again.output
    assert {f: f.read_bytes() for f in records(tmp_path)} == before


def test_interrupted_run_keeps_finished_records_and_resumes(tmp_path, monkeypatch):
    real_train = runner.train
    calls = []

    def flaky(*a, **k):
        calls.append(k.get("desc"))
        if len(calls) == 3:  # seed 0 done (standard + adversarial); die while training seed 1
            raise KeyboardInterrupt
        return real_train(*a, **k)

    monkeypatch.setattr(runner, "train", flaky)
    res = invoke(*BASE, "-m", "random", "--seeds", "2", "--results", str(tmp_path))
    assert res.exit_code != 0
    (done,) = records(tmp_path)
    assert "_s0_" in done.name and not list(tmp_path.rglob("*.tmp"))
    kept = done.read_bytes()
    calls.clear()
    res = invoke(*BASE, "-m", "random", "--seeds", "2", "--results", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert calls == ["standard s1", "adversarial linf s1"]  # only the missing seed is trained
    assert len(records(tmp_path)) == 2 and done.read_bytes() == kept


def test_a_changed_protocol_never_overwrites_old_records(tmp_path):
    """Same results folder, same cell, another protocol hash: the old record stays, byte for byte."""
    results = tmp_path / "results"
    assert invoke(*BASE, "-m", "random", "--seeds", "1", "--results", str(results)).exit_code == 0
    (old_path,) = records(results)
    kept = old_path.read_bytes()
    changed = yaml.safe_load(open(TINY_PROTOCOL))
    changed["train"]["epochs"] = 3
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(changed))
    res = invoke("run", "-d", "digits", "-p", str(tmp_path / "p.yaml"), "-m", "random", "--seeds", "1",
                 "--results", str(results), "--no-progress")
    assert res.exit_code == 0, res.output
    paths = records(results)
    assert len(paths) == 2 and old_path in paths and old_path.read_bytes() == kept  # beside it, not over it
    (new_path,) = [p for p in paths if p != old_path]
    assert new_path.parent == old_path.parent and json.loads(new_path.read_text())["protocol"]["hash"] not in old_path.name
    old = invoke(*BASE, "-m", "random", "--seeds", "1", "--results", str(results))
    assert "already recorded" in old.output and old_path.read_bytes() == kept


@pytest.mark.parametrize("args,message", [
    (["-m", "randm"], "unknown method 'randm'. Did you mean: random"),
    (["-m", "random", "-d", "mnist55k"], "unknown dataset 'mnist55k'. Did you mean: mnist5k"),
    (["-m", "random", "--model", "resnet19"], "unknown model 'resnet19'. Did you mean: resnet18"),
    (["-m", "random", "--budget", "500"], "budget 500 images per class is larger than class"),
    (["-m", "random", "--compressed", "x.pt"], "exactly one of --method or --compressed"),
])
def test_bad_input_gets_a_clear_error(tmp_path, args, message):
    res = invoke(*BASE, "--results", str(tmp_path), *args)
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output
    assert not records(tmp_path)


def test_compress_then_run_from_the_file(tmp_path):
    out = tmp_path / "random.pt"
    res = invoke("compress", "-m", "random", "-d", "digits", "-b", "7", "--seed", "3", "-p", TINY_PROTOCOL, "-o", str(out))
    assert res.exit_code == 0, res.output
    again = invoke("compress", "-m", "random", "-d", "digits", "-b", "7", "-p", TINY_PROTOCOL, "-o", str(out))
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    res = invoke(*BASE, "--compressed", str(out), "--seeds", "1", "--results", str(tmp_path / "r"))
    assert res.exit_code == 0, res.output
    (rec,) = [json.loads(p.read_text()) for p in records(tmp_path / "r")]
    assert rec["method"]["name"] == f"random (file {rec['compressed_set']['content_hash'][:8]})"
    assert rec["budget"]["per_class_counts"] == [7] * 10 and rec["budget"]["ipc"] == 7
    wrong = invoke("run", "-d", "mnist5k", "-p", TINY_PROTOCOL, "--compressed", str(out), "--seeds", "1",
                   "--results", str(tmp_path / "r2"), "--no-progress")
    assert wrong.exit_code == 2


def test_leaderboard_render_from_a_run(tmp_path):
    invoke(*BASE, "-m", "random", "--seeds", "2", "--results", str(tmp_path))
    invoke(*BASE, "-m", "full", "--seeds", "1", "--results", str(tmp_path))
    res = invoke("leaderboard", "render", "--results", str(tmp_path), "--out", str(tmp_path / "lb.md"))
    assert res.exit_code == 0, res.output
    md = (tmp_path / "lb.md").read_text()
    assert "## tiny v1 · digits · linf" in md
    assert "| random" in md and "| full" in md and "**" in md
