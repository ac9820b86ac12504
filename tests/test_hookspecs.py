"""One test per hook (datasette's rule), and no import cycle inside the package."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import torch

import dcrobench
import dcrobench.hookspecs as hookspecs
from dcrobench.attacks import AttackSet, AttackSpec
from dcrobench.datasets import DatasetSpec
from dcrobench.hookspecs import hookimpl
from dcrobench.imageset import ImageSet
from dcrobench.methods import CompressionMethod, select_per_class
from dcrobench.models import ModelSpec
from dcrobench.registry import build_registries
from tests.helpers import blobs


class _First(CompressionMethod):
    name = "hook-first"

    def compress(self, data, budget, seed, device):
        return select_per_class(data, {c: data.class_indices(c)[:budget] for c in range(data.num_classes)})


def _registries(hook_name: str, items: list):
    plugin = type("P", (), {hook_name: staticmethod(hookimpl(lambda: items))})()
    return build_registries(extra_plugins={"hook-test": plugin})


def test_hook_register_methods():
    regs = _registries("register_methods", [_First])
    assert regs.methods.get("hook-first") is _First and regs.methods.origin("hook-first").plugin == "hook-test"
    out = regs.methods.get("hook-first")().run(blobs(), 2, 0, torch.device("cpu"))
    assert out.per_class_counts(3) == [2, 2, 2]


def test_hook_register_datasets():
    spec = DatasetSpec("hook-blobs", 3, 1, 4, (0.5,), (0.5,), lambda root, download: (blobs(), blobs(seed=1)))
    regs = _registries("register_datasets", [spec])
    train, test = regs.datasets.get("hook-blobs").load(Path("."), False)
    assert isinstance(train, ImageSet) and len(test) == 36 and regs.datasets.origin("hook-blobs").builtin is False


def test_hook_register_models():
    spec = ModelSpec("hook-linear", lambda c, s, k, mean, std: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * s * s, k)))
    regs = _registries("register_models", [spec])
    model = regs.models.get("hook-linear").build(1, 4, 3, (0.5,), (0.5,))
    assert model(torch.zeros(2, 1, 4, 4)).shape == (2, 3)


def test_hook_register_attacks():
    noop = AttackSpec("hook-noop", lambda model, **k: (lambda x, y: x.clone()), defaults={"strength": 1})
    both = AttackSet("hook-both", ("hook-noop", "pgd"))
    regs = _registries("register_attacks", [noop, both])
    assert regs.attacks.get("hook-noop") is noop and regs.attacks.get("hook-both").members == ("hook-noop", "pgd")
    assert regs.attacks.get("apgd-ce").autoattack  # the built-ins are registered beside it


def test_every_hookspec_has_its_own_test_function():
    specs = {n for n in dir(hookspecs) if n.startswith("register_")}
    here = ast.parse(Path(__file__).read_text())
    tested = {node.name.removeprefix("test_hook_") for node in here.body if isinstance(node, ast.FunctionDef)}
    assert specs <= tested, f"hooks without a test_hook_<name>: {sorted(specs - tested)}"


def _package_modules() -> dict[str, Path]:
    root = Path(dcrobench.__file__).parent
    return {f"dcrobench.{m.name}": root / f"{m.name}.py" for m in pkgutil.iter_modules([str(root)])}


def _imports(name: str, path: Path) -> set[str]:
    """Modules of the package that ``name`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y / from . import x
                base = "dcrobench" + (f".{base}" if base else "")
                targets = [base] if node.module else [f"dcrobench.{a.name}" for a in node.names]
            else:
                targets = [base]
            found.update(t for t in targets if t.startswith("dcrobench.") and not t.startswith("dcrobench_"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dcrobench."))
    return found


def test_no_import_cycle_inside_the_package():
    modules = _package_modules()
    graph = {m: {t for t in _imports(m, p) if t in modules and t != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(t):], t]))
            if t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    for m in modules:
        importlib.import_module(m)  # and every module imports on its own
