"""Sweeps: a grid file expands to tasks; executors run them locally or on Ray.

A grid file names a protocol and the axes. ``grid`` is a list of blocks, each a product of its
axes (so MNIST can go with the MLP and CIFAR10 with the ConvNet, as in the paper's appendix C);
keys set at the top level are defaults for every block::

    name: quick
    protocol: quick
    methods: [random, herding]
    grid:
      - {datasets: [mnist5k], budgets: [10, 50], models: [mlp], norms: [linf], seeds: [0, 1, 2]}

A *task* is one (protocol, method, dataset, budget, seed) with all of its models and norms: the
compressed set it shares is made once inside the task. Each task writes its records itself (atomic,
collision-free names), so executors only schedule; a killed sweep re-run skips finished records
and, through the stage cache, finished stages.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import DcrobenchError, ProtocolError
from .names import unknown_name_message

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
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProtocolError(f"grid {path} is not valid YAML: {exc}") from None
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
        merged = {**top, **block}
        for needed in ("protocol", "methods", "datasets"):
            if not merged.get(needed):
                raise ProtocolError(f"grid {path}, block {i}: '{needed}' is required")
        for axis in AXES:
            if axis in merged and not isinstance(merged[axis], list):
                merged[axis] = [merged[axis]]
        blocks.append(merged)
    return Grid(str(raw.get("name") or path.stem), blocks, str(path), path.parent)


# --- one task ------------------------------------------------------------------------------
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


def run_task(task: dict[str, Any], results_dir: str, device: str | None, threads: int | None) -> dict[str, Any]:
    """Run one task (picklable: executed in worker processes and Ray workers)."""
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    from .device import resolve_device, set_threads
    from .protocol import load_protocol
    from .registry import registries
    from .runner import RunRequest, run
    from .stages import STAGES_DIRNAME, StageStore

    set_threads(threads)
    t = Task(**{**task, "models": tuple(task["models"]), "norms": tuple(task["norms"])})
    proto = load_protocol(t.protocol)
    store = StageStore(Path(results_dir) / STAGES_DIRNAME)
    start = time.perf_counter()
    n = 0
    for model in t.models:
        req = RunRequest(dataset=t.dataset, protocol=proto, method=t.method, budget=t.budget, model=model, norms=t.norms,
                         seeds=(t.seed,), results_dir=Path(results_dir), device=resolve_device(device), progress=False)
        n += len(run(req, registries(), log=lambda m: None, store=store))
    return {"task": task, "records": n, "seconds": time.perf_counter() - start,
            "computed": dict(store.computed), "loaded": dict(store.loaded)}


# --- executors -----------------------------------------------------------------------------
def pending_tasks(grid: Grid, results_dir: Path) -> tuple[list[Task], int]:
    tasks, done = [], 0
    for task in grid.tasks():
        cells = task_cells(task, results_dir)
        if all(path.exists() for _, path in cells):
            done += 1
        else:
            tasks.append(task)
    return tasks, done


def run_local(tasks: Iterable[Task], results_dir: Path, device: str | None, threads: int | None, workers: int,
              on_done: Callable[[dict], None]) -> None:
    payloads = [asdict(t) for t in tasks]
    if workers <= 1:
        for p in payloads:
            on_done(run_task(p, str(results_dir), device, threads))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_task, p, str(results_dir), device, threads) for p in payloads]
        for fut in as_completed(futures):
            on_done(fut.result())


def run_ray(tasks: Iterable[Task], results_dir: Path, device: str | None, threads: int | None, workers: int,
            on_done: Callable[[dict], None], address: str | None = None) -> None:
    """Each task a Ray task (one GPU when the cluster has GPUs); records go to the shared results folder."""
    try:
        import ray
    except ImportError:
        raise DcrobenchError("the Ray executor needs Ray: pip install 'dcrobench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=None if address else max(1, workers), include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=threads or 1)(run_task)
        pending = [remote.remote(asdict(t), str(Path(results_dir).resolve()), device, threads) for t in tasks]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                on_done(ray.get(ref))
    finally:
        if started_here:
            ray.shutdown()


EXECUTORS = {"local": run_local, "ray": run_ray}


def run_sweep(grid: Grid, results_dir: Path, *, executor: str = "local", workers: int = 1, device: str | None = None,
              threads: int | None = None, progress: bool | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    from tqdm.auto import tqdm

    if executor not in EXECUTORS:
        raise DcrobenchError(unknown_name_message("executor", executor, EXECUTORS))
    tasks, done = pending_tasks(grid, results_dir)
    total = len(tasks) + done
    log(f"grid {grid.name}: {total} tasks, {done} done, {len(tasks)} to run ({executor}, {workers} worker(s))")
    summary = {"tasks": total, "already_done": done, "ran": 0, "computed": {}, "loaded": {}}
    bar = tqdm(total=total, initial=done, desc=f"sweep {grid.name}", unit="task", disable=None if progress is None else not progress)

    def on_done(result: dict) -> None:
        summary["ran"] += 1
        for k in ("computed", "loaded"):
            for stage, n in result[k].items():
                summary[k][stage] = summary[k].get(stage, 0) + n
        bar.update(1)
        running = min(workers, len(tasks) - summary["ran"])
        bar.set_postfix(done=done + summary["ran"], running=running, left=len(tasks) - summary["ran"] - running)

    try:
        EXECUTORS[executor](tasks, results_dir, device, threads, workers, on_done)
    finally:
        bar.close()
    return summary


def grid_status(grid: Grid, results_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for task in grid.tasks():
        for label, path in task_cells(task, results_dir):
            model, norm = label.split("/")
            rows.append({"protocol": Path(task.protocol).stem, "method": task.method, "dataset": task.dataset,
                         "budget": task.budget, "model": model, "norm": norm, "seed": task.seed, "done": path.exists()})
    return rows
