"""Every shipped grid loads, and every method it names accepts its protocol's parameters."""

from pathlib import Path

import pytest

from dcrobench.grid import load_grid
from dcrobench.protocol import load_protocol
from dcrobench.registry import registries

GRIDS = sorted((Path(__file__).resolve().parents[1] / "benchmarks" / "grids").glob("*.yaml"))


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_grid_methods_accept_their_protocol(path):
    pairs = {(task.protocol, task.method) for task in load_grid(path).tasks()}  # per-block protocols and methods
    assert pairs
    for proto_name, name in sorted(pairs):
        proto = load_protocol(proto_name)
        cls = registries().methods.get(name)
        cls(**proto.method_params(name, cls.protocol_blocks))  # refused here, not hours into a sweep


def test_the_quick_grid_runs_every_registered_builtin_method():
    import yaml

    quick = yaml.safe_load((GRIDS[0].parent / "quick.yaml").read_text())
    builtin = {n for n in registries().methods if registries().methods.origin(n).provider.startswith("dcrobench")}
    assert builtin <= set(quick["methods"])
