import os

import pytest
import torch


def pytest_configure(config):
    # Two shared cores: more threads than free cores slows small models by orders of magnitude.
    torch.set_num_threads(int(os.environ.get("DCROBENCH_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DCROBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
