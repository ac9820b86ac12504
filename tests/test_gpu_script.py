"""The device script's planning (benchmarks/gpu/device_run.py) and one end-to-end cell on CUDA.

The planning tests are cheap and run everywhere; ``test_quick_cell_runs_on_cuda`` is among the CUDA
tests the device script selects (``-k cuda``) and skips without CUDA.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from dcrobench.grid import load_grid

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def device_run():
    spec = importlib.util.spec_from_file_location("device_run", ROOT / "benchmarks" / "gpu" / "device_run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_table1_mnist_grid_runs_the_priority_methods_first():
    tasks = load_grid(ROOT / "benchmarks" / "grids" / "table1-mnist.yaml").tasks()
    assert [(t.method, t.seed) for t in tasks[:3]] == [("random", 0), ("dm", 0), ("mcs", 0)]
    assert [(t.method, t.seed) for t in tasks[-3:]] == [("full", 0), ("full", 1), ("full", 2)]
    assert {t.seed for t in tasks[:14]} == {0} and {t.seed for t in tasks[14:-3]} == {1, 2}
    assert {(t.dataset, t.budget or 50, t.models, t.norms, t.protocol) for t in tasks} == \
        {("mnist", 50, ("resnet18",), ("linf",), "paper")}
    table1 = {(t.method, t.seed) for t in load_grid(ROOT / "benchmarks" / "grids" / "table1.yaml").tasks()
              if t.dataset == "mnist"}
    assert len(tasks) == len(table1) and {(t.method, t.seed) for t in tasks} == table1


def test_budget_split_gives_dm_its_share_only_when_the_grid_has_work(device_run):
    assert device_run.split_budget(100.0, 0.4, grid_pending=True, dm_pending=True) == pytest.approx(60.0)
    assert device_run.split_budget(100.0, 0.4, grid_pending=True, dm_pending=False) == 100.0
    assert device_run.split_budget(100.0, 0.4, grid_pending=False, dm_pending=True) == 0.0


def test_stage_lines_are_parsed(device_run):
    text = ("protocol paper v4 (hash for random: abc, file hash def)\n"
            "random mnist b50 resnet18 s0 · compress (500 images): computed (0.1 s; 0 s elapsed)\n"
            "random mnist b50 resnet18 s0 · train standard: loaded from the stage cache (12.5 s; 1 s elapsed)\n")
    rows = device_run.parse_stage_lines(text)
    assert [(r["stage"], r["seconds"], r["cached"]) for r in rows] == \
        [("compress (500 images)", 0.1, False), ("train standard", 12.5, True)]


def test_pack_fits_the_device_return_limits_and_restores(device_run, tmp_path, monkeypatch):
    monkeypatch.setattr(device_run, "PART_BYTES", 5000)
    monkeypatch.setattr(device_run, "MAX_TOTAL_BYTES", 40_000)
    (tmp_path / "summary.md").write_text("s")
    (tmp_path / "records" / "p-v1" / "mnist").mkdir(parents=True)
    (tmp_path / "records" / "p-v1" / "mnist" / "r.json").write_text(json.dumps({"x": 1}))
    (tmp_path / "dm500-s0.pt").write_bytes(torch.randn(2000).numpy().tobytes())  # 8000 bytes, incompressible
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "dm-k.ckpt.pt").write_bytes(b"\0" * 20_000)  # too big: left out
    chosen, left_out = device_run.bundle_plan(tmp_path)
    assert [p.name for p in left_out] == ["dm-k.ckpt.pt"] and len(chosen) == 2
    names = device_run.pack(tmp_path, chosen)
    files = sorted(p.name for p in tmp_path.rglob("*"))
    assert files == sorted(["summary.md", *names]) and 2 <= len(names) <= device_run.MAX_FILES - 1
    assert all((tmp_path / n).stat().st_size <= 5000 for n in names)
    state = tmp_path / "state"
    device_run.restore(tmp_path, device_run.parse_args(["--restore", str(tmp_path), "--state", str(state)]))
    assert json.loads((state / "results" / "p-v1" / "mnist" / "r.json").read_text()) == {"x": 1}
    assert (state / "dm" / "dm500-s0.done").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_quick_cell_runs_on_cuda(tmp_path):
    import dcrobench

    (record,) = dcrobench.run("random", "digits", protocol="quick", seeds=1, results=tmp_path, device="cuda",
                              progress=False)
    assert record.env["device"].startswith("cuda") and record.env.get("gpu")
    assert 0.5 < record.scores.standard <= 1.0 and 0.0 <= record.scores.robust <= record.adversarial.clean_acc
