"""A broken third-party plugin is one `error:` (or `warning:`) line naming it, never a traceback, and never
takes down commands that do not need it.

Each plugin is a real module in a temporary folder with real ``*.dist-info`` metadata on ``sys.path``,
so ``importlib.metadata`` finds its ``dcrobench`` entry point exactly as it finds a pip-installed plugin.
Cases: (a) items of the wrong type, refused at registration; (b) a dataset loader that raises (or returns
junk) when a run loads it; (c) a module that calls ``sys.exit()`` or raises another ``BaseException`` when
imported, or a hook that does.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dcrobench.cli import main
from dcrobench.hookspecs import hookimpl
from dcrobench.registry import PluginLoader, build_registries, registries
from dcrobench_plugins.baselines import Random
from tests.helpers import TINY_PROTOCOL

RUN = ["run", "--no-progress", "--threads", "1", "--seeds", "1", "-p", TINY_PROTOCOL]

# a dataset whose loader raises, built on the embedded digits spec (shape, classes, normalisation)
RAISING_LOADER = '''
import dataclasses
import sys
from dcrobench.hookspecs import hookimpl
import dcrobench_plugins.datasets as _builtin


def _raises(root, download):
    {body}


@hookimpl
def register_datasets():
    digits = next(s for s in _builtin.register_datasets() if s.name == "digits")
    return [dataclasses.replace(digits, name="fiery", load=_raises, cache_tensors=False, description="raises")]
'''

WRONG_TYPES = '''
import types
from dcrobench.hookspecs import hookimpl


class NotAMethod:  # looks like a method, but is no CompressionMethod
    name = "not-a-method"
    kind = "selection"
    description = "duck-typed"

    def compress(self, data, budget, seed, device):
        raise AssertionError("never called")


@hookimpl
def register_methods():
    return [NotAMethod]


@hookimpl
def register_datasets():
    return [types.SimpleNamespace(name="not-a-dataset", num_classes=10, channels=1, size=8, mean=(0.5,), std=(0.5,),
                                  load=lambda root, download: None)]


@hookimpl
def register_models():
    return [types.SimpleNamespace(name="not-a-model", build=lambda *a, **k: None)]


@hookimpl
def register_attacks():
    return [types.SimpleNamespace(name="not-an-attack")]
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """``add(dist, ep_name, source)``: install a fake distribution whose entry point ``ep_name`` is a module
    with ``source``; the process-wide registries are rebuilt around the test."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    modules: list[str] = []

    def add(dist: str, ep_name: str, source: str) -> None:
        module = f"robust_{dist.replace('-', '_')}_{ep_name}"
        modules.append(module)
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[dcrobench]\n{ep_name} = {module}\n")
        importlib.invalidate_caches()
        registries.cache_clear()

    registries.cache_clear()
    yield add
    registries.cache_clear()
    for m in modules:
        sys.modules.pop(m, None)


def invoke(*args: str | Path):
    return CliRunner().invoke(main, [str(a) for a in args])


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def assert_one_error(res, *needles: str) -> str:
    """Exit != 0, no traceback, exactly one `error:` line on stderr, containing every needle; returns it."""
    assert res.exit_code not in (0, None), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def assert_ok_and_warned(res, *needles: str) -> None:
    """Exit 0, no traceback, no `error:` line, and a `warning:` line about the broken plugin."""
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "error:" not in res.output, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert any(all(n in w for n in needles) for w in warnings), res.output


# --- (a) items of the wrong type: refused at registration, with a clear message ----------------
def test_items_of_the_wrong_type_are_refused_at_registration(site):
    site("wrong-types", "wrongtypes", WRONG_TYPES)
    regs = build_registries()
    assert regs.methods.get("random") is Random  # the rest of the registry is intact
    for registry, name, expected in [(regs.methods, "not-a-method", "not a subclass of dcrobench.methods.CompressionMethod"),
                                     (regs.datasets, "not-a-dataset", "not a dcrobench.datasets.DatasetSpec"),
                                     (regs.models, "not-a-model", "not a dcrobench.models.ModelSpec"),
                                     (regs.attacks, "not-an-attack", "not a dcrobench.attacks.AttackSpec or AttackSet")]:
        assert name not in registry
        (failure,) = [f for f in regs.failures if f.plugin == "wrongtypes" and expected in f.error]
        assert not failure.conflict and "refused" in str(failure)
        with pytest.raises(Exception, match=f"{registry.kind} '{name}' is not available: .*wrongtypes.*wrong-types 1.0"):
            registry.get(name)


def test_a_hook_returning_something_other_than_a_list_is_reported():
    class ReturnsAClass:
        @hookimpl
        def register_methods(self):
            return Random  # forgot the brackets

    regs = build_registries(extra_plugins={"no_list": ReturnsAClass()})
    (failure,) = [f for f in regs.failures if f.plugin == "no_list"]
    assert "register_methods returned class" in failure.error and "not a list of methods" in failure.error
    assert regs.methods.get("random") is Random


def test_list_reports_the_wrong_types_and_keeps_working(site):
    site("wrong-types", "wrongtypes", WRONG_TYPES)
    res = invoke("list", "methods")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert "random" in res.output
    assert ("plugin 'wrongtypes' skipped: register_methods returned class robust_wrong_types_wrongtypes.NotAMethod, "
            "not a subclass of dcrobench.methods.CompressionMethod; refused") in res.output


@pytest.mark.parametrize("args,needles", [
    (["-m", "not-a-method", "-d", "digits"], ["method 'not-a-method'", "plugin 'wrongtypes'", "CompressionMethod"]),
    (["-m", "random", "-d", "not-a-dataset"], ["dataset 'not-a-dataset'", "plugin 'wrongtypes'", "DatasetSpec"]),
    (["-m", "random", "-d", "digits", "--model", "not-a-model"], ["model 'not-a-model'", "plugin 'wrongtypes'", "ModelSpec"]),
], ids=["method", "dataset", "model"])
def test_running_a_refused_item_is_one_error_line(site, tmp_path, args, needles):
    site("wrong-types", "wrongtypes", WRONG_TYPES)
    res = invoke(*RUN, *args, "--results", tmp_path / "results")
    assert_one_error(res, *needles)
    assert files_under(tmp_path / "results") == []


def test_a_protocol_naming_a_refused_attack_is_one_error_line(site, tmp_path):
    site("wrong-types", "wrongtypes", WRONG_TYPES)
    proto = yaml.safe_load(Path(TINY_PROTOCOL).read_text())
    proto["evaluation"]["attacks"] = ["not-an-attack"]
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(proto))
    res = invoke("run", "--no-progress", "--threads", "1", "--seeds", "1", "-p", path, "-m", "random", "-d", "digits",
                 "--results", tmp_path / "results")
    assert_one_error(res, "attack 'not-an-attack'", "plugin 'wrongtypes'")
    assert files_under(tmp_path / "results") == []


# --- (b) a plugin dataset whose loader raises (or returns junk) when a run loads it -------------
LOADER_BODIES = {
    "raises": ('raise RuntimeError("disk on fire")', "its loader raised RuntimeError: disk on fire"),
    "exits": ("sys.exit(4)", "its loader raised SystemExit: it called sys.exit(4)"),
    "returns-junk": ("return None", "its loader returned None, not a (train, test) pair of ImageSet"),
}


@pytest.mark.parametrize("case", sorted(LOADER_BODIES))
def test_run_on_a_dataset_whose_loader_fails_is_one_error_line_and_writes_nothing(site, tmp_path, case):
    body, message = LOADER_BODIES[case]
    site("fiery-plugin", "fiery", RAISING_LOADER.format(body=body))
    results = tmp_path / "results"
    res = invoke(*RUN, "-m", "random", "-d", "fiery", "--results", results)
    line = assert_one_error(res, "dataset 'fiery'", "plugin 'fiery'", "fiery-plugin 1.0", message)
    assert line.startswith("error: dataset 'fiery' of plugin 'fiery' (fiery-plugin 1.0): "), line
    assert files_under(results) == []  # no record, no stage, no claim left behind
    assert files_under(tmp_path / "cache") == []  # the per-test DCROBENCH_CACHE (tests/conftest.py)


@pytest.mark.parametrize("case", sorted(LOADER_BODIES))
def test_compress_on_a_dataset_whose_loader_fails_is_one_error_line_and_writes_nothing(site, tmp_path, case):
    body, message = LOADER_BODIES[case]
    site("fiery-plugin", "fiery", RAISING_LOADER.format(body=body))
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "set.pt"
    res = invoke("compress", "-m", "random", "-d", "fiery", "-b", "3", "-p", TINY_PROTOCOL, "--threads", "1", "-o", out)
    assert_one_error(res, "dataset 'fiery'", "plugin 'fiery'", message)
    assert files_under(tmp_path / "out") == [] and files_under(tmp_path / "cache") == []


def test_a_failing_loader_does_not_affect_other_datasets(site, tmp_path):
    site("fiery-plugin", "fiery", RAISING_LOADER.format(body='raise RuntimeError("disk on fire")'))
    out = tmp_path / "set.pt"
    res = invoke("compress", "-m", "random", "-d", "digits", "-b", "3", "-p", TINY_PROTOCOL, "--threads", "1", "-o", out)
    assert res.exit_code == 0 and "error:" not in res.output, res.output
    assert out.exists()
    regs = build_registries()
    assert not isinstance(regs.datasets.get("digits").load, PluginLoader)  # built-in loaders are not wrapped
    assert isinstance(regs.datasets.get("fiery").load, PluginLoader)


# --- (c) sys.exit() or another BaseException when the plugin is imported (or its hook called) ---
IMPORT_FAILURES = {
    "sys-exit": ("import sys\nsys.exit(3)\n", "import failed: SystemExit: it called sys.exit(3)"),
    "sys-exit-message": ("import sys\nsys.exit('no GPU here')\n",
                         "import failed: SystemExit: it called sys.exit('no GPU here')"),
    "base-exception": ("class Odd(BaseException):\n    pass\n\nraise Odd('odd')\n", "import failed: Odd: odd"),
    "hook-exits": ("import sys\nfrom dcrobench.hookspecs import hookimpl\n\n\n@hookimpl\ndef register_methods():\n"
                   "    sys.exit(5)\n", "register_methods raised SystemExit: it called sys.exit(5)"),
}


@pytest.mark.parametrize("case", sorted(IMPORT_FAILURES))
def test_a_plugin_exiting_on_import_is_a_broken_plugin_in_list(site, case):
    source, message = IMPORT_FAILURES[case]
    site("exiting-plugin", "exiting", source)
    res = invoke("list")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert "random" in res.output and "digits" in res.output and "pgd" in res.output
    assert f"plugin 'exiting' skipped: {message}" in res.output


@pytest.mark.parametrize("case", ["sys-exit", "base-exception"])
def test_a_plugin_exiting_on_import_does_not_stop_another_methods_compress(site, tmp_path, case):
    source, message = IMPORT_FAILURES[case]
    site("exiting-plugin", "exiting", source)
    out = tmp_path / "set.pt"
    res = invoke("compress", "-m", "random", "-d", "digits", "-b", "3", "-p", TINY_PROTOCOL, "--threads", "1", "-o", out)
    assert_ok_and_warned(res, "plugin 'exiting' skipped", message)
    assert out.exists()


def test_a_plugin_exiting_on_import_does_not_stop_another_methods_run(site, tmp_path):
    site("exiting-plugin", "exiting", IMPORT_FAILURES["sys-exit"][0])
    res = invoke(*RUN, "-m", "random", "-d", "digits", "--results", tmp_path / "results")
    assert_ok_and_warned(res, "plugin 'exiting' skipped", "sys.exit(3)")
    assert any(p.suffix == ".json" and "_stages" not in p.parts for p in files_under(tmp_path / "results"))


def test_asking_for_the_method_of_a_plugin_that_exited_is_one_error_line(site, tmp_path):
    site("exiting-plugin", "exiting", IMPORT_FAILURES["hook-exits"][0])
    res = invoke(*RUN, "-m", "exiting-method", "-d", "digits", "--results", tmp_path / "results")
    assert_one_error(res, "method 'exiting-method'")
    assert "plugin 'exiting' skipped" in res.stderr  # the warning says which plugin is broken
    assert files_under(tmp_path / "results") == []


def test_ctrl_c_while_a_plugin_is_imported_still_stops(site):
    site("slow-plugin", "slow", "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        build_registries()
