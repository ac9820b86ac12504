"""Every number in a record belongs to the data it names: identities from content, honest costs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

import dcrobench.methods
import dcrobench.runner
import dcrobench.stages
from dcrobench.cli import main
from dcrobench.methods import CompressedSet
from dcrobench.protocol import load_protocol
from dcrobench.registry import registries
from dcrobench.results import load_records, record_paths
from dcrobench.runner import RunRequest, run
from dcrobench.stages import STAGES_DIRNAME, StageStore
from tests.helpers import TINY_PROTOCOL

RUN = ["run", "-d", "digits", "-p", TINY_PROTOCOL, "--no-progress", "--threads", "1", "--seeds", "1"]


def invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A set saved by `dcrobench compress` (random, 7 per class)."""
    path = tmp_path_factory.mktemp("saved") / "set.pt"
    res = invoke("compress", "-m", "random", "-d", "digits", "-b", "7", "-p", TINY_PROTOCOL, "-o", str(path))
    assert res.exit_code == 0, res.output
    return path


def copy_with(src, dst, **tensors):
    comp = CompressedSet.load(src)
    for k, v in tensors.items():
        setattr(comp, k, v)
    dst.parent.mkdir(parents=True, exist_ok=True)
    comp.save(dst)
    return dst


def run_file(path, results, log=lambda m: None):
    req = RunRequest(dataset="digits", protocol=load_protocol(TINY_PROTOCOL), compressed_file=path, results_dir=results)
    store = StageStore(results / STAGES_DIRNAME, warn=log)
    return [r.to_json() for r in run(req, registries(), log=log, store=store)], store  # the records as written


def test_a_saved_set_is_identified_by_its_tensors_not_its_metadata(saved, tmp_path):
    """Defect 1: an all-zero copy with the same metadata reused the real set's models and scores."""
    zeros = copy_with(saved, tmp_path / "zeros" / "set.pt", images=torch.zeros_like(CompressedSet.load(saved).images))
    (real,), _ = run_file(saved, tmp_path / "r")
    (zero,), store = run_file(zeros, tmp_path / "r")
    assert store.computed["standard"] == 1 and store.computed["adversarial"] == 1 and store.computed["attack"] == 2
    assert zero["compressed_set"]["content_hash"] != real["compressed_set"]["content_hash"]
    assert zero["method"]["name"] != real["method"]["name"]
    assert zero["standard"]["clean_acc"] != real["standard"]["clean_acc"]  # an all-black set learns nothing


def test_records_are_named_by_the_maker_and_the_content_never_the_file_name(saved, tmp_path):
    """Defect 2: B/set.pt after A/set.pt was 'already recorded' and the record said 'file:set'."""
    a = copy_with(saved, tmp_path / "A" / "set.pt")
    b_comp = CompressedSet.load(saved)
    b = copy_with(saved, tmp_path / "B" / "set.pt", images=(b_comp.images * 0.5))
    renamed = copy_with(saved, tmp_path / "C" / "other-name.pt")
    (ra,), _ = run_file(a, tmp_path / "r")
    (rb,), _ = run_file(b, tmp_path / "r")
    assert len(record_paths(tmp_path / "r")) == 2
    ha = ra["compressed_set"]["content_hash"]
    assert ra["method"]["name"] == f"random (file {ha[:8]})" and ra["compressed_set"]["from_file"] is True
    assert rb["method"]["name"] != ra["method"]["name"]
    assert ra["method"]["source"]["distribution"] == "dcrobench" and ra["method"]["source"]["plugin"] == "baselines"
    logs = []
    (rc,), store = run_file(renamed, tmp_path / "r", log=logs.append)
    assert any("already recorded" in m for m in logs) and rc["method"]["name"] == ra["method"]["name"]
    assert not store.computed


def test_record_holds_the_content_hash_of_what_was_trained(tmp_path):
    res = invoke(*RUN, "-m", "random", "--results", str(tmp_path))
    assert res.exit_code == 0, res.output
    (rec,) = load_records(tmp_path)
    stage = next((tmp_path / STAGES_DIRNAME / "compress").glob("*.pt"))
    assert rec["compressed_set"] == {"content_hash": CompressedSet.load(stage).content_hash(), "from_file": False}
    assert rec["method"]["source"] == registries().methods.origin("random").as_dict()


def test_a_damaged_stage_file_is_reported_once_and_recomputed(tmp_path):
    """Defect 9: a corrupt file under _stages/ ended every later run in a traceback."""
    assert invoke(*RUN, "-m", "random", "--results", str(tmp_path)).exit_code == 0
    (rec_path,) = record_paths(tmp_path)
    kept = json.loads(rec_path.read_text())
    stages = tmp_path / STAGES_DIRNAME
    damaged = [next((stages / "compress").glob("*.pt")), *sorted((stages / "models").glob("*.pt")),
               *sorted((stages / "attack").glob("*.json"))]
    for p in damaged:
        p.write_bytes(p.read_bytes()[:10])
    rec_path.unlink()  # the user removed the record to redo it
    res = invoke(*RUN, "-m", "random", "--results", str(tmp_path))
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.output.splitlines() if line.startswith("warning: stage file")]
    assert sorted(w.split()[3] for w in warnings) == sorted(str(p) for p in damaged)  # each once
    (again,) = load_records(tmp_path)
    assert again["scores"] == kept["scores"]  # recomputed from the same seeds, not lost
    assert not any(again["cost"]["cached"].values())
    res = invoke(*RUN, "-m", "random", "--results", str(tmp_path))
    assert "warning" not in res.output  # repaired


class FakeClock:
    """perf_counter that moves only when the pipeline's stages say so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_costs(monkeypatch) -> FakeClock:
    """A clock that only training (100 s each) and evaluations (10 s each) move."""
    clock = FakeClock()
    for module in (dcrobench.stages, dcrobench.methods):
        monkeypatch.setattr(module, "time", SimpleNamespace(perf_counter=clock))
    real_train, real_eval = dcrobench.runner.train, dcrobench.runner.evaluate_robustness

    def train(*a, **k):
        clock.now += 100.0
        return real_train(*a, **k)

    def evaluate(*a, **k):
        clock.now += 10.0
        return real_eval(*a, **k)

    monkeypatch.setattr(dcrobench.runner, "train", train)
    monkeypatch.setattr(dcrobench.runner, "evaluate_robustness", evaluate)
    return clock


def test_each_cost_times_only_its_own_stage_and_cached_stages_keep_their_cost(tmp_path, monkeypatch):
    """Defect 10: eval_s included the lazily run training (76 s of eval inside 64 s of wall time)."""
    clock = fake_costs(monkeypatch)
    assert invoke(*RUN, "-m", "random", "--results", str(tmp_path)).exit_code == 0
    (rec,) = load_records(tmp_path)
    assert rec["cost"]["train_s"] == 200.0 and rec["cost"]["eval_s"] == 20.0
    assert rec["cost"]["cached"] == {"compress": False, "standard": False, "adversarial": False, "attack": False}

    record_paths(tmp_path)[0].unlink()
    assert invoke(*RUN, "-m", "random", "--results", str(tmp_path)).exit_code == 0
    (again,) = load_records(tmp_path)
    assert again["cost"]["train_s"] == 200.0 and again["cost"]["eval_s"] == 20.0  # the original cost
    assert again["cost"]["cached"] == {"compress": True, "standard": True, "adversarial": True, "attack": True}
    assert clock.now == 220.0  # nothing ran the second time


def test_the_transfer_surrogate_is_its_own_cost_reported_to_every_record_that_uses_it(tmp_path, monkeypatch):
    """Issue 35: the surrogate's training was charged to the eval_s of whichever record needed it first (61.1 s for
    random s0, 9.9 s for herding once it was cached)."""
    import yaml

    raw = yaml.safe_load(open(TINY_PROTOCOL))
    raw["evaluation"]["extra_attacks"] = ["transfer-pgd"]
    raw["attacks"]["transfer-pgd"] = {"steps": 3}
    protocol = tmp_path / "transfer.yaml"
    protocol.write_text(yaml.safe_dump(raw))
    clock = fake_costs(monkeypatch)
    for method in ("random", "herding"):
        res = invoke("run", "-d", "digits", "-p", str(protocol), "--no-progress", "--threads", "1", "--seeds", "1",
                     "-m", method, "--results", str(tmp_path / "r"))
        assert res.exit_code == 0, res.output
    costs = {r["method"]["name"]: r["cost"] for r in load_records(tmp_path / "r")}
    for cost in costs.values():
        # two models trained (200 s), four evaluations (two cascades, two extra-attack runs: 40 s); the surrogate's
        # 100 s of training apart, the same for both though only the first trained it
        assert (cost["train_s"], cost["eval_s"], cost["surrogate_s"]) == (200.0, 40.0, 100.0)
    assert clock.now == 2 * 240.0 + 100.0


def test_a_shared_proxy_reports_its_training_time_to_every_method_that_uses_it(tmp_path):
    """Defect 10: compress_s was 0.0 once the proxy was cached (1.9 s the first time)."""
    for method in ("herding", "kcenter"):
        res = invoke(*RUN, "-m", method, "--results", str(tmp_path))
        assert res.exit_code == 0, res.output
    by_method = {r["method"]["name"]: r["cost"] for r in load_records(tmp_path)}
    assert by_method["herding"]["proxy_s"] > 0
    assert by_method["kcenter"]["proxy_s"] == by_method["herding"]["proxy_s"]  # trained once, loaded once
    for cost in by_method.values():
        assert cost["compress_s"] >= cost["proxy_s"]


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_written_files_honour_the_umask(tmp_path, mask):
    """Defect 12: every file was 0600 whatever the umask (a shared results folder was unreadable)."""
    old = os.umask(mask)
    try:
        assert invoke(*RUN, "-m", "random", "--results", str(tmp_path)).exit_code == 0
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o666 & ~mask}


def test_a_damaged_cache_entry_is_reported_once_and_recomputed(tmp_path):
    """Proxy models and parsed datasets live in the cache; a damaged entry is rebuilt, with one warning each."""
    assert invoke(*RUN, "-m", "herding", "--results", str(tmp_path / "a")).exit_code == 0
    cache = Path(os.environ["DCROBENCH_CACHE"])
    damaged = [*cache.glob("proxy/*.pt"), *cache.glob("datasets/digits-*.pt")]
    assert len(damaged) == 2
    for p in damaged:
        p.write_bytes(b"garbage")
    res = invoke(*RUN, "-m", "herding", "--results", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    warned = [line for line in res.output.splitlines() if line.startswith("warning: cache entry")]
    assert sorted(w.split()[3] for w in warned) == sorted(map(str, damaged))
    first, second = (load_records(tmp_path / d)[0] for d in "ab")
    assert first["scores"] == second["scores"]
    assert "warning" not in invoke(*RUN, "-m", "herding", "--results", str(tmp_path / "c")).output


def test_per_point_flags_must_give_the_recorded_accuracies():
    from dcrobench.attacks import decode_flags, encode_flags
    from dcrobench.validation import record_errors

    repo = Path(__file__).resolve().parents[1]
    rec = json.loads(next((repo / "leaderboard" / "records" / "quick-v2").rglob("random_*_s0_*.json")).read_text())
    assert record_errors(rec) == []
    ev = rec["adversarial"]
    flags = decode_flags(ev["flags"]["apgd-ce"], ev["n"])
    flags[torch.nonzero(~flags)[0]] = True  # one more point "survives" than the accuracy says
    tampered = {**rec, "adversarial": {**ev, "flags": {**ev["flags"], "apgd-ce": encode_flags(flags)}}}
    assert any("adversarial/flags/apgd-ce" in e for e in record_errors(tampered))
    missing = {**rec, "adversarial": {**ev, "flags": {k: v for k, v in ev["flags"].items() if k != "pgd"}}}
    assert any("flags for" in e for e in record_errors(missing))


def test_a_record_names_its_own_cell(tmp_path):
    """One definition of a cell: the key the runner wrote a record under is the key read back from it."""
    from dcrobench.results import CellKey, record_path

    assert invoke(*RUN, "-m", "random", "--results", str(tmp_path)).exit_code == 0
    (path,) = record_paths(tmp_path)
    assert record_path(tmp_path, CellKey.of_record(json.loads(path.read_text()))) == path


# --- issue 33: every stage and cache entry is checked against its key; a cell's record must be that cell's -------
def _stage_warnings(output):
    return [line for line in output.splitlines() if line.startswith(("warning: stage file", "warning: cache entry"))]


def test_a_replaced_model_stage_is_refused_and_retrained(tmp_path):
    """A model stage file replaced by another model's (robust score 23 % instead of 15 %) was used silently."""
    assert invoke(*RUN, "-m", "random", "--results", str(tmp_path)).exit_code == 0
    (rec_path,) = record_paths(tmp_path)
    kept = json.loads(rec_path.read_text())
    models = tmp_path / STAGES_DIRNAME / "models"
    standard, adversarial = (next(models.glob(f"{kind}-*.pt")) for kind in ("standard", "adversarial"))
    std_bytes, std_seal = standard.read_bytes(), Path(f"{standard}.seal").read_bytes()
    standard.write_bytes(adversarial.read_bytes())  # the bytes alone: the seal's digest no longer holds
    adversarial.write_bytes(std_bytes)  # a whole entry copied under another key: its seal names the other key
    Path(f"{adversarial}.seal").write_bytes(std_seal)
    shutil.rmtree(tmp_path / STAGES_DIRNAME / "attack")  # so that the models are needed again
    rec_path.unlink()
    res = invoke(*RUN, "-m", "random", "--results", str(tmp_path))
    assert res.exit_code == 0, res.output
    warned = _stage_warnings(res.output)
    assert sorted(w.split()[3] for w in warned) == sorted([str(standard), str(adversarial)])
    assert any("changed after it was written" in w for w in warned) and any("was written for key" in w for w in warned)
    (again,) = load_records(tmp_path)
    assert again["scores"] == kept["scores"]


def test_a_sealed_but_invalid_compress_stage_is_recomputed_not_a_crash_forever(tmp_path):
    """A loadable compress stage with NaN pixels and label 42 crashed every re-run and was never recomputed."""
    from dcrobench.cache import torch_bytes, write_entry

    assert invoke(*RUN, "-m", "random", "--results", str(tmp_path)).exit_code == 0
    (rec_path,) = record_paths(tmp_path)
    kept = json.loads(rec_path.read_text())
    stage = next((tmp_path / STAGES_DIRNAME / "compress").glob("*.pt"))
    comp = CompressedSet.load(stage)
    comp.images[0, 0, 0, 0] = float("nan")
    comp.labels[1] = 42
    write_entry(stage, stage.stem, torch_bytes(comp.payload()))  # sealed for its own key: only the content is wrong
    rec_path.unlink()
    res = invoke(*RUN, "-m", "random", "--results", str(tmp_path))
    assert res.exit_code == 0, res.output
    (warning,) = _stage_warnings(res.output)
    assert str(stage) in warning and "NaN" in warning
    assert load_records(tmp_path)[0]["scores"] == kept["scores"]
    assert not _stage_warnings(invoke(*RUN, "-m", "random", "--results", str(tmp_path / "again")).output)


def test_an_edited_dataset_cache_entry_is_refused_and_the_cache_is_keyed_by_the_source_content(tmp_path):
    """The parsed-dataset cache was keyed by name: a tampered copy was used (standard score 12 % instead of 59 %)."""
    assert invoke(*RUN, "-m", "random", "--results", str(tmp_path / "a")).exit_code == 0
    cache = Path(os.environ["DCROBENCH_CACHE"])
    (entry,) = cache.glob("datasets/digits-*.pt")
    payload = torch.load(entry, weights_only=True)
    payload["train_y"] = payload["train_y"].roll(1)  # loadable, valid, wrong
    torch.save(payload, entry)
    res = invoke(*RUN, "-m", "random", "--results", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    (warning,) = _stage_warnings(res.output)
    assert str(entry) in warning and "changed after it was written" in warning
    first, second = (load_records(tmp_path / d)[0] for d in "ab")
    assert first["scores"] == second["scores"]

    import dcrobench.datasets as datasets

    spec = registries().datasets.get("digits")
    other = dataclasses.replace(spec, sources=lambda: (Path(__file__),))  # other source bytes: another entry
    datasets.load_dataset(other, None, False)
    assert len(list(cache.glob("datasets/digits-*.pt"))) == 2


def test_a_record_at_a_cells_path_must_name_that_cell(tmp_path):
    """run trusted whatever record sat at a cell's path (a copy of seed 0's under seed 1's name was 'recorded')."""
    assert invoke(*RUN, "-m", "random", "--results", str(tmp_path)).exit_code == 0
    (seed0,) = record_paths(tmp_path)
    seed1 = seed0.with_name(seed0.name.replace("_s0_", "_s1_"))
    seed1.write_bytes(seed0.read_bytes())
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    res = invoke(*RUN[:-1], "2", "-m", "random", "--results", str(tmp_path))
    assert res.exit_code != 0
    (line,) = [entry for entry in res.output.splitlines() if entry.startswith("error:")]
    assert "is not this cell's record (seed 0 instead of 1)" in line and "Traceback" not in res.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_saved_sets_identity_covers_its_extra_radius(saved, tmp_path):
    """Two files differing only in extra_radius got one name and one record under weighted_radius eps+eta."""
    n = len(CompressedSet.load(saved))
    plain = CompressedSet.load(saved).content_hash()
    small = copy_with(saved, tmp_path / "s" / "set.pt", extra_radius=torch.full((n,), 0.01), extra_radius_norm="linf")
    large = copy_with(saved, tmp_path / "l" / "set.pt", extra_radius=torch.full((n,), 0.2), extra_radius_norm="linf")
    as_l2 = copy_with(saved, tmp_path / "n" / "set.pt", extra_radius=torch.full((n,), 0.2), extra_radius_norm="l2")
    hashes = {CompressedSet.load(p).content_hash() for p in (small, large, as_l2)}
    assert len(hashes) == 3 and plain not in hashes
    # a set without an extra radius keeps the identity it had before the radius was hashed (records keep their cells)
    legacy = hashlib.sha256()
    comp = CompressedSet.load(saved)
    for name, t, dtype in (("images", comp.images, torch.float32), ("labels", comp.labels, torch.int64),
                           ("weights", comp.weights, torch.float32)):
        if t is None:
            legacy.update(f"{name}:none;".encode())
            continue
        t = t.to(dtype).contiguous()
        legacy.update(f"{name}:{tuple(t.shape)};".encode() + t.numpy().tobytes())
    assert plain == legacy.hexdigest()


def test_a_full_disk_mid_run_is_one_error_line_leaves_nothing_half_written_and_resumes(tmp_path, monkeypatch):
    """A full disk (or a folder made read-only) mid-run ended in a traceback; nothing half-written was left and
    resume worked: keep that."""
    import errno

    import dcrobench.fileio as fileio

    write = fileio._atomic_write

    def full(path, *args, **kwargs):
        if Path(path).suffix == ".json" and STAGES_DIRNAME not in Path(path).parts:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write(path, *args, **kwargs)

    monkeypatch.setattr(fileio, "_atomic_write", full)
    res = invoke(*RUN, "-m", "random", "--results", str(tmp_path))
    assert res.exit_code != 0 and "Traceback" not in res.output
    (line,) = [entry for entry in res.output.splitlines() if entry.startswith("error:")]
    assert "No space left on device" in line and "re-run the same command to resume" in line
    assert record_paths(tmp_path) == [] and not list(tmp_path.rglob("*.tmp"))
    monkeypatch.setattr(fileio, "_atomic_write", write)
    res = invoke(*RUN, "-m", "random", "--results", str(tmp_path))
    assert res.exit_code == 0 and "computed" not in res.output.replace("loaded from the stage cache", "")
    assert len(record_paths(tmp_path)) == 1
