"""The Python API at the package top: each entry point, its errors, and the README's example."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import dcrobench
from dcrobench.datasets import load_dataset, stratified_subset
from dcrobench.errors import DcrobenchError, UnknownNameError
from dcrobench.registry import registries

from .helpers import TINY_PROTOCOL

REPO = Path(__file__).resolve().parents[1]


def test_import_is_light_and_documents_the_api():
    code = "import sys, dcrobench; assert 'torch' not in sys.modules; print(dcrobench.run.__doc__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Compress, train" in out
    assert set(dcrobench.__all__) >= {"run", "compress", "sweep", "load_results", "load_model", "load_dataset"}


def test_run_returns_records_loads_as_a_dataframe_and_exports_models_that_reload(tmp_path):
    records = dcrobench.run("random", "digits", protocol=TINY_PROTOCOL, seeds=1, norms=["linf", "l2"],
                            results=tmp_path / "r", save_models=tmp_path / "models", threads=1)
    assert [(r.norm, r.seed) for r in records] == [("linf", 0), ("l2", 0)]
    df = dcrobench.load_results(tmp_path / "r")
    assert len(df) == 2 and set(df["norm"]) == {"linf", "l2"}
    assert list(df.sort_values("norm")["robust_score"]) == [r.scores.robust for r in sorted(records, key=lambda r: r.norm)]
    assert {"standard_score", "adv_apgd-ce", "train_s", "protocol_hash"} <= set(df.columns)

    # the exported adversarial model is the one that was scored: same clean accuracy on the same test points
    rec = next(r for r in records if r.norm == "linf")
    (path,) = (tmp_path / "models").glob("*_linf_*_adversarial.safetensors")
    model = dcrobench.load_model(path)
    assert isinstance(model, torch.nn.Module) and not model.training
    _, test = load_dataset(registries().datasets.get("digits"), None, False)
    test = stratified_subset(test, rec.standard.n)
    with torch.no_grad():
        acc = int((model(test.images).argmax(1) == test.labels).sum()) / len(test)
    assert acc == pytest.approx(rec.adversarial.clean_acc, abs=1e-9)
    assert len(list((tmp_path / "models").glob("*_standard.safetensors"))) == 1  # one standard model per seed

    again = dcrobench.run("random", "digits", protocol=TINY_PROTOCOL, seeds=1, results=tmp_path / "r", threads=1)
    assert again[0].to_json() == rec.to_json()  # read back, not recomputed


def test_compress_then_run_the_saved_set(tmp_path):
    comp = dcrobench.compress("herding", "digits", budget=3, protocol=TINY_PROTOCOL, out=tmp_path / "set.pt", threads=1)
    assert comp.per_class_counts(10) == [3] * 10
    (rec,) = dcrobench.run(compressed=tmp_path / "set.pt", dataset="digits", protocol=TINY_PROTOCOL, seeds=1,
                           results=tmp_path / "r", threads=1)
    assert rec.method.name.startswith("herding (file ") and rec.budget.per_class_counts == [3] * 10
    with pytest.raises(DcrobenchError, match="refusing to overwrite"):
        dcrobench.compress("herding", "digits", budget=3, protocol=TINY_PROTOCOL, out=tmp_path / "set.pt")


def test_sweep_runs_a_grid(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "t", "protocol": TINY_PROTOCOL, "methods": ["random"],
                                    "grid": [{"datasets": ["digits"], "budgets": [5], "models": ["mlp"],
                                              "norms": ["linf"], "seeds": [0]}]}))
    summary = dcrobench.sweep(grid, results=tmp_path / "r", threads=1)
    assert summary["ran"] == 1 and summary["failed"] == 0
    assert len(dcrobench.load_results(tmp_path / "r")) == 1


def test_the_api_raises_the_cli_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="Did you mean"):
        dcrobench.run("herdin", "digits", protocol=TINY_PROTOCOL, results=tmp_path)
    with pytest.raises(DcrobenchError, match="--threads must be"):
        dcrobench.run("random", "digits", protocol=TINY_PROTOCOL, results=tmp_path, threads=0)
    with pytest.raises(DcrobenchError, match="does not exist"):
        dcrobench.load_results(tmp_path / "nowhere")
    with pytest.raises(DcrobenchError, match="model spec not found"):
        dcrobench.load_model(tmp_path / "missing.safetensors")


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    (example,) = re.findall(r"```python\n(# the Python API.*?)```", readme, re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {})
    assert (tmp_path / "results").is_dir() and list((tmp_path / "models").glob("*.safetensors"))
