"""The template plugin package installs with pip and registers through the entry-point group."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "example-plugin"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    import shutil

    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "example-plugin"
    shutil.copytree(EXAMPLE, source)  # building writes build/ and egg-info next to the sources
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    return env


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "dcrobench.cli", *args], env=env, capture_output=True, text=True, timeout=300)


def test_installed_example_plugin_is_listed(installed_example):
    out = _cli(installed_example, "list", "methods")
    assert out.returncode == 0, out.stderr
    assert "prototypes" in out.stdout and "example" in out.stdout


def test_installed_example_plugin_compresses_under_the_harness(installed_example, tmp_path):
    out_file = tmp_path / "protos.pt"
    out = _cli(installed_example, "compress", "-m", "prototypes", "-d", "digits", "-b", "5", "-o", str(out_file), "--threads", "1")
    assert out.returncode == 0, out.stderr
    from dcrobench.methods import CompressedSet

    comp = CompressedSet.load(out_file)
    assert comp.per_class_counts(10) == [5] * 10
    assert comp.provenance.method == "prototypes" and comp.provenance.per_class_counts == [5] * 10
