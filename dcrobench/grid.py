"""Grid files: a grid expands to tasks, each owning the record paths of its cells.

A grid file names a protocol and the axes. ``grid`` is a list of blocks, each a product of its
axes (so MNIST can go with the MLP and CIFAR10 with the ConvNet, as in the paper's appendix C);
keys set at the top level are defaults for every block::

    name: quick
    protocol: quick
    methods: [random, herding]
    grid:
      - {datasets: [mnist5k], budgets: [10, 50], models: [mlp], norms: [linf], seeds: [0, 1, 2]}

A *task* is one (protocol, method, dataset, budget, seed) with all of its models and norms: the
compressed set it shares is made once inside the task (see :mod:`dcrobench.tasks`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DcrobenchError, ProtocolError
from .names import unknown_name_message
from .protocol import check_seeds
from .userfiles import read_yaml_file

AXES = ("methods", "datasets", "budgets", "models", "norms", "seeds")
BLOCK_KEYS = set(AXES) | {"protocol"}


@dataclass(frozen=True)
class Task:
    protocol: str
    method: str
    dataset: str
    budget: int | None
    seed: int
    models: tuple[str, ...]
    norms: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.method}/{self.dataset}/b{self.budget}/s{self.seed}"

    @property
    def cell(self) -> str:
        """The label with the protocol, models and norms: names the task unambiguously in messages."""
        proto = Path(self.protocol).stem if self.protocol.endswith((".yaml", ".yml")) else self.protocol
        return f"{self.label} (protocol {proto}, models {','.join(self.models)}, norms {','.join(self.norms)})"

    @classmethod
    def from_payload(cls, task: dict[str, Any]) -> Task:
        return cls(**{**task, "models": tuple(task["models"]), "norms": tuple(task["norms"])})


@dataclass
class Grid:
    name: str
    blocks: list[dict[str, Any]]
    source: str = ""
    base_dir: Path = field(default_factory=Path.cwd)

    def protocol_ref(self, ref: str) -> str:
        """Protocol names stay names; relative YAML paths are taken relative to the grid file."""
        if ref.endswith((".yaml", ".yml")) and not Path(ref).is_absolute():
            candidate = self.base_dir / ref
            if candidate.exists():
                return str(candidate)
        return ref

    def tasks(self) -> list[Task]:
        from .protocol import load_protocol
        from .registry import registries

        methods = registries().methods
        out: list[Task] = []
        for block in self.blocks:
            proto_ref = self.protocol_ref(block["protocol"])
            proto = load_protocol(proto_ref)
            models = tuple(block.get("models") or [proto.model])
            norms = tuple(block.get("norms") or ["linf"])
            seeds = block.get("seeds") or list(proto.seeds)
            budgets = block.get("budgets") or [proto.budget]
            for method, dataset, budget, seed in itertools.product(block["methods"], block["datasets"], budgets, seeds):
                if method in methods and not methods.get(method).uses_budget:
                    budget = None
                out.append(Task(proto_ref, method, dataset, budget, int(seed), models, norms))
        return list(dict.fromkeys(out))


def load_grid(path: str | Path) -> Grid:
    path = Path(path)
    if not path.is_file():
        raise DcrobenchError(f"grid file not found: {path}")
    raw = read_yaml_file(path, "grid")
    if not isinstance(raw, dict):
        raise ProtocolError(f"grid {path} must be a YAML mapping")
    top = {k: v for k, v in raw.items() if k not in ("name", "grid", "description")}
    bad = set(top) - BLOCK_KEYS
    if bad:
        raise ProtocolError(f"grid {path}: " + "; ".join(unknown_name_message("key", k, BLOCK_KEYS | {"name", "grid", "description"}) for k in sorted(bad)))
    blocks = []
    for i, block in enumerate(raw.get("grid") or [{}]):
        if not isinstance(block, dict):
            raise ProtocolError(f"grid {path}: block {i} must be a mapping")
        bad = set(block) - BLOCK_KEYS
        if bad:
            raise ProtocolError(f"grid {path}, block {i}: " + "; ".join(unknown_name_message("key", k, BLOCK_KEYS) for k in sorted(bad)))
        where = f"grid {path}, block {i}"
        merged = {k: v for k, v in {**top, **block}.items() if v is not None}  # `models:` alone: the default
        for axis in AXES:
            if axis in merged:
                merged[axis] = axis_values(merged[axis], axis, where)
        for needed in ("protocol", "methods", "datasets"):
            if needed not in merged:
                raise ProtocolError(f"{where}: '{needed}' is required")
        if not isinstance(merged["protocol"], str):
            raise ProtocolError(f"{where}: protocol: expected a protocol name or YAML file, got {merged['protocol']!r}")
        blocks.append(merged)
    return Grid(str(raw.get("name") or path.stem), blocks, str(path), path.parent)


def axis_values(value: Any, axis: str, where: str) -> list[Any]:
    """A grid axis as a list of its values (one value alone is a list of one), each of the axis's type."""
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ProtocolError(f"{where}: '{axis}' is empty: give at least one value, or leave the key out")
    if axis == "seeds":
        return list(check_seeds(values, f"{where}: seeds"))
    if axis == "budgets":
        if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in values):
            raise ProtocolError(f"{where}: budgets: expected a list of positive integers, got {values!r}")
    elif not all(isinstance(v, str) and v for v in values):
        raise ProtocolError(f"{where}: {axis}: expected a list of names, got {values!r}")
    return values


def task_cells(task: Task, results_dir: Path) -> list[tuple[str, Path]]:
    """(model/norm label, record path) of every cell the task owns."""
    from .protocol import load_protocol
    from .registry import registries
    from .results import record_path
    from .runner import RunRequest, cell_key, resolve

    proto = load_protocol(task.protocol)
    out = []
    for model in task.models:
        req = RunRequest(dataset=task.dataset, protocol=proto, method=task.method, budget=task.budget, model=model,
                         norms=task.norms, seeds=(task.seed,), results_dir=results_dir)
        res = resolve(req, registries())
        for norm in task.norms:
            out.append((f"{model}/{norm}", record_path(results_dir, cell_key(req, res, norm, task.seed))))
    return out


def grid_status(grid: Grid, results_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for task in grid.tasks():
        for label, path in task_cells(task, results_dir):
            model, norm = label.split("/")
            rows.append({"protocol": Path(task.protocol).stem, "method": task.method, "dataset": task.dataset,
                         "budget": task.budget, "model": model, "norm": norm, "seed": task.seed, "done": path.exists()})
    return rows
