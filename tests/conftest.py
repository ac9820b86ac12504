import os
import tempfile

import pytest


def pytest_configure(config):
    # Two shared cores: more threads than free cores slows small models by orders of magnitude.
    from dcrobench.device import set_threads

    set_threads(int(os.environ.get("DCROBENCH_TEST_THREADS", "1")))
    # Module-scoped fixtures run before per-test fixtures: keep even those out of ~/.cache.
    os.environ["DCROBENCH_CACHE"] = tempfile.mkdtemp(prefix="dcrobench-test-cache-")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Each test gets an empty cache, so no test sees another's proxy models or solutions."""
    monkeypatch.setenv("DCROBENCH_CACHE", str(tmp_path / "cache"))
