from importlib.metadata import EntryPoint

import pytest
from click.testing import CliRunner

import dcrobench.plugins as plugins_mod
from dcrobench.cli import main
from dcrobench.errors import UnknownNameError
from dcrobench.hookspecs import hookimpl
from dcrobench.methods import CompressionMethod
from dcrobench.registry import build_registries, registries
from dcrobench.results import record_paths


class Echo(CompressionMethod):
    name = "echo-external"
    kind = "selection"

    def compress(self, data, budget, seed, device):
        raise NotImplementedError


class ExternalPlugin:
    @hookimpl
    def register_methods(self):
        return [Echo]


def test_builtins_are_registered_through_entry_points():
    regs = build_registries()
    assert {"full", "random"} <= set(regs.methods)
    assert {"mnist", "cifar10", "cifar100", "svhn", "digits", "mnist5k"} <= set(regs.datasets)
    assert {"mlp", "convnet", "resnet18"} <= set(regs.models)
    assert {"pgd", "apgd-ce", "apgd-dlr"} <= set(regs.attacks)
    assert regs.methods.source("random") == "baselines"
    for reg in (regs.methods, regs.datasets, regs.models, regs.attacks):
        for name in reg:
            origin = reg.origin(name)
            assert origin.builtin and origin.distribution == "dcrobench" and origin.plugin == reg.source(name)


def test_external_plugin_registers_like_a_builtin():
    regs = build_registries(extra_plugins={"external": ExternalPlugin()})
    assert regs.methods.get("echo-external") is Echo
    assert regs.methods.source("echo-external") == "external"
    origin = regs.methods.origin("echo-external")
    assert not origin.builtin and origin.as_dict() == {"distribution": "unknown", "version": "", "plugin": "external"}


@pytest.mark.parametrize("kind,name,expect", [
    ("methods", "randon", "random"), ("datasets", "mnist5", "mnist5k"), ("models", "resnet", "resnet18"),
    ("attacks", "apgd_ce", "apgd-ce"),
])
def test_unknown_names_suggest_the_nearest(kind, name, expect):
    regs = registries()
    with pytest.raises(UnknownNameError) as err:
        getattr(regs, kind).get(name)
    assert f"Did you mean: {expect}" in str(err.value)
    assert "Available" in str(err.value)


def test_misspelled_hook_fails_loudly():
    class Typo:
        @hookimpl
        def register_method(self):  # missing "s"
            return [Echo]

    regs = build_registries(extra_plugins={"typo": Typo()})
    assert "echo-external" not in regs.methods
    failure = next(f for f in regs.failures if f.plugin == "typo")
    assert "unknown hook 'register_method'" in failure.error and "register_methods" in failure.error


def test_a_plugin_whose_hook_raises_is_isolated():
    class Raises:
        @hookimpl
        def register_methods(self):
            raise RuntimeError("boom")

        @hookimpl
        def register_models(self):
            return []

    regs = build_registries(extra_plugins={"raises": Raises()})
    assert "random" in regs.methods
    assert any(f.plugin == "raises" and "boom" in f.error for f in regs.failures)


@pytest.fixture
def broken_entry_point(monkeypatch):
    real = plugins_mod.entry_points

    def fake(group):
        eps = list(real(group=group))
        eps.append(EntryPoint(name="broken", value="dcrobench_no_such_module_xyz", group=group))
        return eps

    monkeypatch.setattr(plugins_mod, "entry_points", fake)
    registries.cache_clear()
    yield
    registries.cache_clear()


def test_plugin_that_fails_to_import_does_not_break_list(broken_entry_point):
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    assert "random" in result.output and "mnist5k" in result.output
    assert "plugin 'broken' skipped: import failed: ModuleNotFoundError" in result.output


def test_broken_plugin_does_not_break_another_methods_run(broken_entry_point, tmp_path):
    from tests.helpers import TINY_PROTOCOL

    result = CliRunner().invoke(main, ["run", "-m", "random", "-d", "digits", "-p", TINY_PROTOCOL, "--seeds", "1",
                                       "--results", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(record_paths(tmp_path)) == 1
