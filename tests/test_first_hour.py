"""A new user's first hour (issue 16): the thread default, progress lines in logs, Ctrl-C, short listings."""

import os

import pytest
import yaml
from click.testing import CliRunner

import dcrobench.api as api
import dcrobench.device as device
from dcrobench.cli import main
from dcrobench.datasets import load_dataset
from dcrobench.errors import DcrobenchError
from dcrobench.registry import registries
from tests.helpers import TINY_PROTOCOL


@pytest.mark.parametrize("cores,load,expected", [(2, 0.0, 1), (2, 1.5, 1), (1, 0.0, 1), (8, 0.0, 8), (8, 2.6, 5),
                                                 (8, 7.9, 1), (8, 30.0, 1)])
def test_auto_threads_takes_the_free_cores_and_one_on_a_small_machine(monkeypatch, cores, load, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert device.auto_threads() == expected
    assert device.resolve_threads("auto") == expected


def test_thread_settings_are_parsed_or_refused():
    assert device.resolve_threads("3") == 3 and device.resolve_threads(2) == 2
    assert device.resolve_threads("torch") is None
    with pytest.raises(DcrobenchError, match="--threads must be a number, 'auto' or 'torch'"):
        device.resolve_threads("many")


def test_set_threads_limits_torch_and_the_blas_pools():
    """numpy's OpenBLAS on a busy core is as oversubscribed as torch: --threads must reach both."""
    import torch
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    try:
        device.set_threads(2)
        assert torch.get_num_threads() == 2
        assert all(pool["num_threads"] <= 2 for pool in threadpool_info())
        device.set_threads(1)
        assert torch.get_num_threads() == 1
        assert threadpool_info() and all(pool["num_threads"] == 1 for pool in threadpool_info())
    finally:
        device.set_threads(before)


def test_run_piped_prints_one_line_per_stage(tmp_path):
    res = CliRunner().invoke(main, ["run", "-m", "random", "-d", "digits", "-p", TINY_PROTOCOL, "--seeds", "1",
                                    "--threads", "1", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    stage_lines = [line for line in res.stderr.splitlines() if " · " in line]
    stages = [line.split(" · ")[1].split(":")[0] for line in stage_lines]
    assert stages[0] == "compress (100 images)" and "train standard" in stages and "train adversarial linf" in stages
    assert [s.split(" (")[0] for s in stages if s.startswith("attack")] == ["attack standard model linf",
                                                                             "attack adversarial model linf"]
    assert all("computed" in line and "elapsed" in line for line in stage_lines)
    quiet = CliRunner().invoke(main, ["run", "-m", "random", "-d", "digits", "-p", TINY_PROTOCOL, "--seeds", "1",
                                      "--threads", "1", "--results", str(tmp_path / "q"), "-q"])
    assert quiet.exit_code == 0 and " · " not in quiet.stderr


def test_sweep_in_a_log_prints_one_line_per_task(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "t", "protocol": TINY_PROTOCOL, "methods": ["random"],
                                    "grid": [{"datasets": ["digits"], "budgets": [5, 10], "models": ["mlp"],
                                              "norms": ["linf"], "seeds": [0]}]}))
    res = CliRunner().invoke(main, ["sweep", str(grid), "--results", str(tmp_path / "r"), "--threads", "1"])
    assert res.exit_code == 0, res.output
    task_lines = [line for line in res.stderr.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in task_lines] == ["[1/2", "[2/2"]
    assert all("random" in line and "1 record(s)" in line and "stages computed" in line for line in task_lines)


def test_ctrl_c_says_what_is_kept_and_how_to_resume(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "run", interrupted)
    res = CliRunner().invoke(main, ["run", "-m", "random", "-d", "digits", "-p", TINY_PROTOCOL, "--threads", "1",
                                    "--results", str(tmp_path)])
    assert res.exit_code == 130
    assert "interrupted: finished records and stages are kept" in res.stderr and "re-run the same command" in res.stderr


def test_list_lines_stay_short_and_protocols_explain_per_method_hashes():
    res = CliRunner().invoke(main, ["list"])
    assert res.exit_code == 0, res.output
    assert max(len(line) for line in res.output.splitlines()) <= 130
    assert "Each record carries its method's own hash" in res.output


def test_default_data_root_follows_dcrobench_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DCROBENCH_CACHE", str(tmp_path))
    with pytest.raises(DcrobenchError) as err:
        load_dataset(registries().datasets.get("mnist"), None, download=False)
    assert str(tmp_path / "data") in str(err.value)
