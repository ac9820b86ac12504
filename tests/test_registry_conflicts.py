"""Built-in names are reserved; a name two third-party plugins claim goes to neither; every item has an origin.

Third-party distributions are written to a temporary folder as real ``*.dist-info`` metadata and put
on ``sys.path``, so ``importlib.metadata`` finds them exactly as it finds a pip-installed plugin.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import EntryPoint, version

import pytest
from click.testing import CliRunner

import dcrobench.plugins as plugins_mod
from dcrobench.cli import main
from dcrobench.errors import UnknownNameError
from dcrobench.hookspecs import hookimpl
from dcrobench.registry import PluginOrigin, build_registries, registries
from dcrobench_plugins.baselines import Random

DCROBENCH_VERSION = version("dcrobench")

# a module body that registers a method (and optionally a dataset) under names of our choosing
PLUGIN_SOURCE = '''
from dcrobench.hookspecs import hookimpl
from dcrobench.methods import CompressionMethod
import dcrobench_plugins.datasets as _builtin


def _method(method_name):
    class M(CompressionMethod):
        name = method_name
        kind = "selection"
        description = "impostor from {dist}"

        def compress(self, data, budget, seed, device):
            raise RuntimeError("impostor")
    return M


@hookimpl
def register_methods():
    return [_method(n) for n in {methods!r}]


@hookimpl
def register_datasets():
    return [spec for spec in _builtin.register_datasets() if spec.name in {datasets!r}]
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Write fake installed distributions; yields ``add(dist, version, ep_name, methods, datasets=())``."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    modules: list[str] = []

    def add(dist: str, ver: str, ep_name: str, methods=(), datasets=(), module: str | None = None):
        module = module or f"fakeplug_{dist.replace('-', '_')}_{ep_name}"
        modules.append(module)
        (root / f"{module}.py").write_text(PLUGIN_SOURCE.format(dist=dist, methods=list(methods), datasets=list(datasets)))
        info = root / f"{dist.replace('-', '_')}-{ver}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {ver}\n")
        eps = info / "entry_points.txt"
        old = eps.read_text() if eps.exists() else "[dcrobench]\n"
        eps.write_text(old + f"{ep_name} = {module}\n")
        importlib.invalidate_caches()
        return root

    registries.cache_clear()
    yield add
    registries.cache_clear()
    for m in modules:
        sys.modules.pop(m, None)


def test_third_party_plugin_cannot_replace_a_builtin(site):
    # the repro: entry-point name 'aaa' sorts before 'baselines' and registers 'random'
    site("evil-plugin", "6.6", "aaa", methods=["random", "evil-extra"], datasets=["digits"])
    regs = build_registries()
    assert regs.methods.get("random") is Random
    assert regs.methods.source("random") == "baselines"
    assert regs.methods.origin("random") == PluginOrigin("baselines", "dcrobench", DCROBENCH_VERSION, True)
    assert regs.datasets.origin("digits").builtin
    # the plugin's other items still register, with their origin
    assert "evil-extra" in regs.methods
    assert regs.methods.origin("evil-extra") == PluginOrigin("aaa", "evil-plugin", "6.6", False)
    # the built-in is not reported as broken; the impostor is reported as a conflict naming both
    assert not any(f.plugin == "baselines" for f in regs.failures)
    conflicts = [f for f in regs.failures if f.plugin == "aaa"]
    assert len(conflicts) == 2 and all(f.conflict for f in conflicts)
    for f in conflicts:
        assert "evil-plugin" in str(f) and "dcrobench" in str(f) and "built-in" in str(f)
    assert any("method 'random'" in str(f) for f in conflicts)
    assert any("dataset 'digits'" in str(f) for f in conflicts)


def test_a_name_two_third_party_plugins_register_is_refused_for_both(site):
    site("plug-one", "1.0", "one", methods=["shared", "only-one"])
    site("plug-two", "2.0", "two", methods=["shared", "only-two"])
    regs = build_registries()
    assert "shared" not in regs.methods
    assert {"only-one", "only-two"} <= set(regs.methods)
    assert regs.methods.origin("only-two").as_dict() == {"distribution": "plug-two", "version": "2.0", "plugin": "two"}
    refused = [f for f in regs.failures if "'shared'" in f.error]
    assert sorted(f.plugin for f in refused) == ["one", "two"]
    for f in refused:
        assert f.conflict and "plug-one" in str(f) and "plug-two" in str(f)


def test_extra_plugins_count_as_third_party_with_unknown_distribution():
    class Impostor:
        @hookimpl
        def register_methods(self):
            return [Random]

    class Echo(Random):
        name = "echo-extra"

    class Extra:
        @hookimpl
        def register_methods(self):
            return [Echo]

    regs = build_registries(extra_plugins={"aaa": Impostor(), "extra": Extra()})
    assert regs.methods.origin("random").builtin
    assert regs.methods.origin("echo-extra") == PluginOrigin("extra", "unknown", "", False)
    (conflict,) = [f for f in regs.failures if f.plugin == "aaa"]
    assert conflict.conflict and "unknown" in conflict.error and "dcrobench" in conflict.error


def test_fake_entry_point_without_distribution_sorting_first_does_not_win(monkeypatch):
    """An entry point with no distribution (dist None) is third-party even when it sorts first."""
    real = plugins_mod.entry_points
    mod = type(sys)("fakeplug_nodist")

    @hookimpl
    def register_methods():
        class R(Random):
            description = "impostor"
        return [R]

    mod.register_methods = register_methods
    monkeypatch.setitem(sys.modules, "fakeplug_nodist", mod)
    monkeypatch.setattr(plugins_mod, "entry_points", lambda group: [
        EntryPoint(name="a", value="fakeplug_nodist", group=group), *real(group=group)])
    regs = build_registries()
    assert regs.methods.get("random") is Random
    assert any(f.plugin == "a" and f.conflict for f in regs.failures)


def test_module_named_like_the_builtins_from_another_distribution_is_not_builtin(site):
    site("sneaky", "0.1", "aaa", methods=["random"], module="dcrobench_plugins_fake")
    regs = build_registries()
    assert regs.methods.get("random") is Random
    assert any(f.plugin == "aaa" and f.conflict for f in regs.failures)


def test_entry_point_name_of_a_builtin_is_refused(site):
    site("clash", "1.0", "baselines", methods=["clash-method"])
    regs = build_registries()
    assert regs.methods.get("random") is Random and regs.methods.origin("random").builtin
    assert "clash-method" not in regs.methods
    (f,) = [f for f in regs.failures if f.plugin == "baselines"]
    assert f.conflict and "clash" in str(f) and "dcrobench" in str(f)


def test_an_item_without_a_name_does_not_sink_the_plugins_other_items():
    class NoName(Random):
        name = ""

    class Good(Random):
        name = "good-one"

    class Mixed:
        @hookimpl
        def register_methods(self):
            return [NoName, Good]

    regs = build_registries(extra_plugins={"mixed": Mixed()})
    assert "good-one" in regs.methods
    assert any(f.plugin == "mixed" and "no name" in f.error for f in regs.failures)


def test_origin_of_an_unknown_name_suggests():
    regs = build_registries()
    with pytest.raises(UnknownNameError, match="Did you mean: random"):
        regs.methods.origin("randon")


def test_list_shows_conflicts_and_keeps_working(site):
    site("evil-plugin", "6.6", "aaa", methods=["random", "evil-extra"])
    root = site("broken-dist", "1.0", "zzz_broken", methods=["x"], module="fakeplug_broken")
    (root / "fakeplug_broken.py").write_text("raise ImportError('nope')\n")
    result = CliRunner().invoke(main, ["list", "methods"])
    assert result.exit_code == 0, result.output
    assert "evil-extra" in result.output and "random" in result.output
    broken = result.output.split("broken plugins")[1]
    assert "conflict" in broken and "evil-plugin" in broken and "'random'" in broken
    assert "plugin 'zzz_broken' skipped: import failed" in broken
    # the built-in row of 'random' is the built-in's
    row = next(line for line in result.output.splitlines() if line.startswith("random "))
    assert "baselines" in row and "impostor" not in row


def test_a_hook_with_a_wrong_signature_is_reported_not_raised():
    class WrongArgs:
        @hookimpl
        def register_methods(self, unexpected):
            return []

    regs = build_registries(extra_plugins={"wrongargs": WrongArgs()})
    assert "random" in regs.methods
    (f,) = [f for f in regs.failures if f.plugin == "wrongargs"]
    assert "could not be registered" in f.error and "unexpected" in f.error


@pytest.mark.parametrize("dist,module,builtin", [
    ("dcrobench", "dcrobench_plugins.baselines", True),
    ("DCRobench", "dcrobench_plugins", True),
    ("dcrobench", "dcrobench_plugins_lookalike", False),
    ("dcrobench", "someone_else", False),
    ("sneaky", "dcrobench_plugins.baselines", False),
    (None, "dcrobench_plugins.baselines", False),
])
def test_builtin_means_dcrobench_distribution_and_dcrobench_plugins_module(dist, module, builtin):
    from types import SimpleNamespace

    ep = EntryPoint(name="x", value=f"{module}:obj", group="dcrobench")
    if dist is not None:
        ep = ep._for(SimpleNamespace(name=dist, version="1.2", metadata={"Name": dist}))
    origin = plugins_mod.entry_point_origin(ep)
    assert origin.builtin is builtin
    assert origin == PluginOrigin("x", dist or "unknown", "1.2" if dist else "", builtin)


def test_an_entry_point_name_two_distributions_use_is_refused_for_both(site):
    site("dist-a", "1.0", "same", methods=["from-a"], module="fakeplug_same_a")
    site("dist-b", "1.0", "same", methods=["from-b"], module="fakeplug_same_b")
    regs = build_registries()
    assert "from-a" not in regs.methods and "from-b" not in regs.methods
    (f,) = [f for f in regs.failures if f.plugin == "same"][:1]
    assert f.conflict and "dist-a" in f.error and "dist-b" in f.error
