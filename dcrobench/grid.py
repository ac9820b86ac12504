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
import math
from collections import defaultdict
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
        budget = "full" if self.budget is None else f"b{self.budget}"  # as record names and stage lines say it
        return f"{self.method}/{self.dataset}/{budget}/s{self.seed}"

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


def task_cells(task: Task, results_dir: Path, protocols: dict[str, Any] | None = None) -> list[tuple[str, Path]]:
    """(model/norm label, record path) of every cell the task owns. ``protocols``: the protocols parsed so far, by
    reference, shared between calls so that each is parsed once per grid."""
    from .protocol import load_protocol
    from .registry import registries
    from .results import record_path
    from .runner import RunRequest, cell_key, resolve

    protocols = {} if protocols is None else protocols
    if task.protocol not in protocols:
        protocols[task.protocol] = load_protocol(task.protocol)
    proto = protocols[task.protocol]
    out = []
    for model in task.models:
        req = RunRequest(dataset=task.dataset, protocol=proto, method=task.method, budget=task.budget, model=model,
                         norms=task.norms, seeds=(task.seed,), results_dir=results_dir)
        res = resolve(req, registries())
        for norm in task.norms:
            out.append((f"{model}/{norm}", record_path(results_dir, cell_key(req, res, norm, task.seed))))
    return out


@dataclass(frozen=True)
class Cell:
    """One record a grid asks for: its task, model, norm, record path and whether the record exists."""

    task: Task
    model: str
    norm: str
    path: Path
    done: bool

    @classmethod
    def of_task(cls, task: Task, cells: list[tuple[str, Path]]) -> list[Cell]:
        """The cells of ``task`` from :func:`task_cells`' answer."""
        return [cls(task, *label.split("/"), path, path.exists()) for label, path in cells]

    @property
    def config(self) -> str:
        """What the cell computes, seed aside: ``method/dataset/b10/model/norm``."""
        budget = "full" if self.task.budget is None else f"b{self.task.budget}"
        return f"{self.task.method}/{self.task.dataset}/{budget}/{self.model}/{self.norm}"


def grid_cells(grid: Grid, results_dir: Path) -> list[Cell]:
    """Every cell of the grid, each protocol parsed once."""
    protocols: dict[str, Any] = {}
    return [cell for task in grid.tasks() for cell in Cell.of_task(task, task_cells(task, results_dir, protocols))]


def grid_status(grid: Grid, results_dir: Path) -> list[dict[str, Any]]:
    return [{"protocol": Path(c.task.protocol).stem, "method": c.task.method, "dataset": c.task.dataset,
             "budget": c.task.budget, "model": c.model, "norm": c.norm, "seed": c.task.seed, "done": c.done}
            for c in grid_cells(grid, results_dir)]


COST_PARTS = ("compress_s", "train_s", "eval_s")


def recorded_cost(path: Path) -> float | None:
    """A record's seconds (``cost.compress_s + train_s + eval_s``), None when the record does not say."""
    from .results import read_record

    rec, _ = read_record(path)
    cost = rec.get("cost") if isinstance(rec, dict) else None
    if not isinstance(cost, dict):
        return None
    parts = [cost.get(k) for k in COST_PARTS]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in parts):
        return None
    return float(sum(parts))


@dataclass(frozen=True)
class CostEstimate:
    """The time the missing cells of a grid should take, from the costs the finished ones recorded: each missing
    cell costs the mean of the finished cells of the same method, dataset, budget, model and norm (other seeds),
    failing that of the same protocol, dataset, model and norm (any method and budget), failing that nothing."""

    seconds: float
    missing: int
    from_other_methods: int  # estimated from the cells of other methods
    without_basis: dict[str, int]  # config -> how many missing cells of it have no recorded cost to go by

    @classmethod
    def of(cls, cells: list[Cell]) -> CostEstimate:
        same: dict[tuple, list[float]] = defaultdict(list)
        near: dict[tuple, list[float]] = defaultdict(list)
        for c in cells:
            cost = recorded_cost(c.path) if c.done else None
            if cost is not None:
                same[(c.task.protocol, c.config)].append(cost)
                near[(c.task.protocol, c.task.dataset, c.model, c.norm)].append(cost)
        seconds, other, without = 0.0, 0, defaultdict(int)
        missing = [c for c in cells if not c.done]
        for c in missing:
            basis = same.get((c.task.protocol, c.config))
            if not basis:
                basis = near.get((c.task.protocol, c.task.dataset, c.model, c.norm))
                other += bool(basis)
            if basis:
                seconds += sum(basis) / len(basis)
            else:
                without[c.config] += 1
        return cls(seconds, len(missing), other, dict(without))

    def phrase(self) -> str:
        """``about 9.5 h at the recorded costs (3 cells from other methods' costs, 31 cells without a recorded
        cost)``; '' when nothing is missing."""
        if not self.missing:
            return ""
        unknown = sum(self.without_basis.values())
        if unknown == self.missing:
            return f"no recorded cost to estimate {'it' if self.missing == 1 else 'them'} from"
        notes = [f"{cells(self.from_other_methods)} from other methods' costs"] if self.from_other_methods else []
        notes += [f"{cells(unknown)} without a recorded cost"] if unknown else []
        return f"about {duration(self.seconds)} at the recorded costs" + (f" ({', '.join(notes)})" if notes else "")

    def without_basis_line(self, most: int = 6) -> str:
        """``without a recorded cost: mcs/digits/b10/mlp/linf (2 cells), ...``; '' when every cell has one."""
        if not self.without_basis:
            return ""
        items = [f"{config} ({cells(n)})" for config, n in self.without_basis.items()]
        more = f", and {len(items) - most} more" if len(items) > most else ""
        return "without a recorded cost: " + ", ".join(items[:most]) + more


def cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def duration(seconds: float) -> str:
    """``40 s``, ``12 min``, ``9.5 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
