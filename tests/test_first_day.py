"""A researcher's first day (issue 35): the test points from Python, attacking an exported model with AutoAttack,
one vocabulary in the lines, MCS's certificate line, time estimates from recorded costs, stage lines from Python."""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

import dcrobench
from dcrobench.cli import main
from dcrobench.errors import DcrobenchError, UnknownNameError
from dcrobench.export import save_model
from dcrobench.grid import Task, load_grid, task_cells
from dcrobench.imageset import ImageSet
from dcrobench.protocol import load_protocol
from dcrobench.registry import registries
from dcrobench.scheduler import run_sweep
from tests.helpers import TINY_PROTOCOL

REPO = Path(__file__).resolve().parents[1]


def test_load_dataset_gives_the_points_a_run_attacks():
    quick = load_protocol("quick")
    images, labels = dcrobench.load_dataset("mnist5k", protocol="quick")
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.shape == (quick.evaluation.test_subset, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    # the committed leaderboard's records of the current quick protocol were attacked on exactly these points
    (record,) = sorted((REPO / "leaderboard" / "records" / f"quick-v{quick.version}" / "mnist5k" / "random").glob(
        "random_mnist5k_b10_mlp_linf_s0_*.json"))
    fingerprint = ImageSet(images, labels, 10).fingerprint()
    rec = json.loads(record.read_text())
    assert fingerprint == rec["standard"]["test_fingerprint"] == rec["adversarial"]["test_fingerprint"]

    train_x, train_y = dcrobench.load_dataset("digits", protocol=TINY_PROTOCOL, split="train")
    assert train_x.shape == (1438, 1, 8, 8) and len(train_y) == 1438
    assert len(dcrobench.load_dataset("digits", protocol=TINY_PROTOCOL)[1]) == 100  # tiny's test_subset


def test_load_dataset_refuses_unknown_names_in_one_line():
    with pytest.raises(UnknownNameError, match=r"^unknown dataset 'mnist5'\. Did you mean: mnist5k") as unknown:
        dcrobench.load_dataset("mnist5")
    assert "\n" not in str(unknown.value)
    with pytest.raises(DcrobenchError, match=r"^unknown split 'val'\. Available splits: test, train\.$"):
        dcrobench.load_dataset("digits", split="val")
    code = "import sys, dcrobench; assert 'torch' not in sys.modules; print(dcrobench.load_dataset.__doc__)"
    assert "test_subset" in subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                           check=True).stdout


class FastAutoAttack:
    """pyautoattack's AutoAttack as the README builds it, made fast: APGD-CE alone, 5 iterations, 1 restart."""

    from pyautoattack import AutoAttack  # the real one, before the test puts this class in its place

    def __new__(cls, model, *, norm, eps, version, **kwargs):
        assert version == "standard"
        adversary = cls.AutoAttack(model, norm=norm, eps=eps, version="custom", attacks=["apgd-ce"], seed=0, **kwargs)
        adversary.apgd.n_iter, adversary.apgd.n_restarts = 5, 1
        FastAutoAttack.made = adversary
        return adversary


def test_the_readme_autoattack_recipe_runs(tmp_path, monkeypatch):
    import pyautoattack

    readme = (REPO / "README.md").read_text()
    (recipe,) = re.findall(r"```python\n(# attack an exported model.*?)```", readme, re.S)
    ds = registries().datasets.get("digits")
    torch.manual_seed(0)
    model = registries().models.get("mlp").build(ds.channels, ds.size, ds.num_classes, ds.mean, ds.std)
    images, labels = dcrobench.load_dataset("digits", protocol="quick")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(30):  # a few full-batch steps: a model that classifies some points to attack
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        opt.step()
    save_model(model, tmp_path / "models" / "random_digits_b10_mlp_linf_s0_h_adversarial.safetensors",
               {"architecture": "mlp", "model_params": {}, "input_shape": [1, 8, 8], "num_classes": 10,
                "normalization": {"mean": list(ds.mean), "std": list(ds.std)}, "dataset": "digits", "norm": "linf",
                "eps": 0.1, "training": "adversarial"})
    monkeypatch.setattr(pyautoattack, "AutoAttack", FastAutoAttack)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(recipe, "README.md", "exec"), ns)

    x_adv, model = ns["x_adv"], ns["model"]
    assert FastAutoAttack.made.attacks_to_run == ["apgd-ce"] and FastAutoAttack.made.apgd.n_iter == 5
    assert torch.equal(ns["images"], images) and x_adv.shape == images.shape
    assert (x_adv - images).abs().max() <= 0.1 + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
    with torch.no_grad():
        clean = (model(images).argmax(1) == labels).float().mean().item()
        assert torch.equal(model(x_adv).argmax(1), ns["predicted"])
    assert 0 < ns["robust"] < clean  # APGD breaks some of the points the model gets right


def tiny_with(tmp_path, **evaluation):
    proto = yaml.safe_load(Path(TINY_PROTOCOL).read_text())
    proto["evaluation"].update(evaluation)
    proto["methods"] = {"mcs": {"time_limit": 1.0}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(proto))
    return path


def test_run_lines_speak_one_vocabulary_and_mcs_says_its_certificate(tmp_path):
    proto = tiny_with(tmp_path, eps_sweep=[0.5, 1, 2])
    args = ["run", "-m", "mcs", "-d", "digits", "-b", "1", "-p", str(proto), "--seeds", "1", "--threads", "1"]
    res = CliRunner().invoke(main, [*args, "--results", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "budget/class" in res.stdout and "ipc" not in res.stdout
    attacks = [line.split(" · ")[1].split(": ")[0] for line in res.stderr.splitlines() if " · attack adversarial" in line]
    assert attacks == ["attack adversarial model linf (100 test points)",
                       "attack adversarial model linf ×0.5 (ε 0.05, 100 test points)",
                       "attack adversarial model linf ×2 (ε 0.2, 100 test points)"]
    (mcs,) = [line for line in res.stderr.splitlines() if line.startswith("mcs:")]
    assert re.fullmatch(r"mcs: eta \d+\.\d{3}-\d+\.\d{3} \(l2\), certified lower bounds \d+\.\d{3}-\d+\.\d{3}, "
                        r"largest certified gap \d+\.\d{2}% \(10 classes, \d+ proved optimal\)", mcs), mcs
    quiet = CliRunner().invoke(main, [*args, "--results", str(tmp_path / "q"), "-q"])
    assert quiet.exit_code == 0 and "mcs:" not in quiet.stderr and " · " not in quiet.stderr


def test_mcs_logs_eta_and_its_certified_gap(caplog, monkeypatch):
    from dcrobench.datasets import load_dataset

    monkeypatch.setattr(logging.getLogger("dcrobench"), "propagate", True)  # the CLI's tests turn it off
    train, _ = load_dataset(registries().datasets.get("digits"), None, False)
    small = train.subset(torch.arange(0, len(train), 3))
    mcs = registries().methods.get("mcs")
    with caplog.at_level(logging.INFO, logger="dcrobench"):
        comp = mcs(time_limit=1.0).compress(small, 2, 0, torch.device("cpu"))
        mcs(time_limit=1.0, radius=2.5).compress(small, 40, 0, torch.device("cpu"))
    lines = [r.getMessage() for r in caplog.records if r.name == "dcrobench" and r.getMessage().startswith("mcs:")]
    assert len(lines) == 2
    per_class = comp.meta["mcs_per_class"]
    eta = [c["eta"] for c in per_class]
    gap = max(c["gap"] for c in per_class)
    optimal = sum(c["optimal"] for c in per_class)
    assert lines[0] == (f"mcs: eta {min(eta):.3f}-{max(eta):.3f} (l2), certified lower bounds "
                        f"{min(c['lower_bound'] for c in per_class):.3f}-{max(c['lower_bound'] for c in per_class):.3f}, "
                        f"largest certified gap {100 * gap:.2f}% (10 classes, {optimal} proved optimal)")
    assert lines[1].startswith("mcs: eta-MCS radius 2.5 (l2): ") and "images per class (certified at least" in lines[1]


def estimate_grid(tmp_path):
    """Random, herding and kcenter at budgets 5 and 10, seeds 0 and 1 (linf), and random b5 l2."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "t", "protocol": TINY_PROTOCOL, "datasets": ["digits"], "models": ["mlp"],
                                    "grid": [{"methods": ["random", "herding", "kcenter"], "budgets": [5, 10],
                                              "norms": ["linf"], "seeds": [0, 1]},
                                             {"methods": ["random"], "budgets": [5], "norms": ["l2"], "seeds": [0]}]}))
    results = tmp_path / "r"
    for method, budget, seconds in (("random", 5, 100.0), ("random", 10, 300.0), ("herding", 5, 50.0)):
        task = Task(TINY_PROTOCOL, method, "digits", budget, 0, ("mlp",), ("linf",))
        ((_, path),) = task_cells(task, results)
        path.parent.mkdir(parents=True, exist_ok=True)  # a finished record, as far as status reads one
        path.write_text(json.dumps({"cost": {"compress_s": seconds / 2, "proxy_s": 0.0, "train_s": seconds / 4,
                                             "eval_s": seconds / 4, "peak_mem_mb": 1.0}}))
    return grid, results


def test_status_and_sweep_estimate_the_missing_time_from_recorded_costs(tmp_path):
    grid, results = estimate_grid(tmp_path)
    res = CliRunner().invoke(main, ["status", str(grid), "--results", str(results)])
    assert res.exit_code == 0, res.output
    # missing: random b5 s1 (100) and b10 s1 (300), herding b5 s1 (50); herding b10 s0/s1 and kcenter's four cells
    # from every method's linf costs (mean 150); random b5 l2: no basis. 1350 s in all.
    assert res.output.splitlines()[-2:] == [
        "3 of 13 cells done, 10 missing, about 22 min at the recorded costs (6 cells from other methods' costs, "
        "1 cell without a recorded cost)",
        "without a recorded cost: random/digits/b5/mlp/l2 (1 cell)"]
    assert "budget/class" in res.output

    class Started(Exception):
        pass

    def first_line(line):
        raise Started(line)

    with pytest.raises(Started) as started:
        run_sweep(load_grid(grid), results, progress=False, log=first_line)
    assert str(started.value) == ("grid t: 13 tasks, 3 done, 10 to run (local, 1 worker(s)); about 22 min at the "
                                  "recorded costs (6 cells from other methods' costs, 1 cell without a recorded cost)")


def test_the_full_set_is_called_full_in_sweep_lines():
    assert Task(TINY_PROTOCOL, "full", "digits", None, 0, ("mlp",), ("linf",)).label == "full/digits/full/s0"
    assert Task(TINY_PROTOCOL, "random", "digits", 5, 1, ("mlp",), ("linf",)).label == "random/digits/b5/s1"


def test_the_python_api_prints_the_stage_lines_unless_told_not_to(tmp_path):
    code = (f"import sys, dcrobench\n"
            f"dcrobench.run('random', 'digits', protocol={TINY_PROTOCOL!r}, seeds=1, results={str(tmp_path / 'a')!r}, "
            f"threads=1)\n"
            f"print('--- silent', file=sys.stderr, flush=True)\n"
            f"dcrobench.run('random', 'digits', protocol={TINY_PROTOCOL!r}, seeds=1, results={str(tmp_path / 'b')!r}, "
            f"threads=1, progress=False)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "DCROBENCH_CACHE": str(tmp_path / "cache")})
    default, silent = out.stderr.split("--- silent")
    assert "random digits b10 mlp s0 · compress (100 images): computed" in default
    assert "· train adversarial linf" in default and "seed 0 linf: standard score" in default
    assert silent.strip() == ""
