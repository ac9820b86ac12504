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

A task that fails (any exception, in-process or in a worker) is reported as one line naming its
cell and the sweep goes on; the summary lists every failure (``failed``, ``failures``). Worker
processes never outlive the sweep: each dies with its parent (``PR_SET_PDEATHSIG`` and a watchdog
thread), and a SIGTERM to the parent stops the workers and ends the sweep with
:class:`SweepInterrupted`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .device import check_threads
from .errors import DcrobenchError, ProtocolError, one_line
from .names import unknown_name_message

AXES = ("methods", "datasets", "budgets", "models", "norms", "seeds")
BLOCK_KEYS = set(AXES) | {"protocol"}
#: signals that stop a sweep cleanly (workers stopped first); SIGINT raises KeyboardInterrupt as usual
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


class SweepInterrupted(DcrobenchError):
    """The sweep got a stop signal; its workers were stopped. A re-run resumes."""

    def __init__(self, signum: int, message: str = "") -> None:
        self.signum = signum
        super().__init__(message or f"sweep stopped by {signal.Signals(signum).name}")


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
    t = Task.from_payload(task)
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


def describe_error(exc: BaseException) -> str:
    """One line: our errors as their message; anything else with its type and where it was raised."""
    if isinstance(exc, DcrobenchError):
        return " ".join(str(exc).split()) or type(exc).__name__
    line = one_line(exc)
    last = traceback.extract_tb(exc.__traceback__)[-1:]
    if last:
        line += f" ({Path(last[0].filename).name}:{last[0].lineno})"
    return line


def task_failure(task: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """What a failed task reports instead of its result (picklable: plain strings)."""
    return {"task": task, "error": describe_error(exc), "type": type(exc).__name__,
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


def run_task_reported(task: dict[str, Any], results_dir: str, device: str | None, threads: int | None) -> dict[str, Any]:
    """``run_task``, with any exception turned into a failure result (so it never has to be pickled)."""
    try:
        return run_task(task, results_dir, device, threads)
    except SweepInterrupted:  # a stop signal is the sweep's, not the task's
        raise
    except Exception as exc:
        return task_failure(task, exc)


# --- worker processes die with their parent -------------------------------------------------
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCHDOG_INTERVAL_S = 0.2


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:  # reparented: the parent is gone
            os._exit(1)
        time.sleep(WATCHDOG_INTERVAL_S)


def worker_init(parent_pid: int) -> None:
    """Initializer of every local worker process: never outlive ``parent_pid``.

    ``PR_SET_PDEATHSIG`` kills the worker as soon as the parent dies (even by SIGKILL), but it is
    tied to the parent *thread* that created the worker; the watchdog thread covers that case and
    non-Linux systems (within ``WATCHDOG_INTERVAL_S``).
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0))
        except Exception:  # no libc prctl: the watchdog still works
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="dcrobench-parent-watchdog", daemon=True).start()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into :class:`SweepInterrupted` in the main thread (elsewhere: no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SweepInterrupted(signum)

    previous = {}
    for sig in STOP_SIGNALS:
        try:
            previous[sig] = signal.signal(sig, handler)
        except (OSError, ValueError):
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_workers(pool) -> None:
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.kill()
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join(timeout=5)


# --- executors -----------------------------------------------------------------------------
def pending_tasks(grid: Grid, results_dir: Path) -> tuple[list[Task], int, list[dict[str, Any]]]:
    """(tasks to run, number already done, failures of tasks whose cells could not even be resolved).

    A configuration error (a ``DcrobenchError``: unknown name, bad parameter) refuses the whole sweep
    before any work, naming the task; anything else (a plugin's bug) fails that task only.
    """
    tasks, done, failed = [], 0, []
    for task in grid.tasks():
        try:
            cells = task_cells(task, results_dir)
        except DcrobenchError as exc:
            raise DcrobenchError(f"grid {grid.name}, task {task.cell}: {describe_error(exc)}") from None
        except Exception as exc:
            failed.append(task_failure(asdict(task), exc))
            continue
        if all(path.exists() for _, path in cells):
            done += 1
        else:
            tasks.append(task)
    return tasks, done, failed


def run_local(tasks: Iterable[Task], results_dir: Path, device: str | None, threads: int | None, workers: int,
              on_done: Callable[[dict], None]) -> None:
    """Tasks in this process (``workers`` 1) or in a pool of spawned processes that die with this one.

    ``on_done`` gets each task's result, or its failure (``"error"`` key) when it raised.
    """
    payloads = [asdict(t) for t in tasks]
    if workers <= 1:
        for p in payloads:
            on_done(run_task_reported(p, str(results_dir), device, threads))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=worker_init, initargs=(os.getpid(),))
    finished = False
    try:
        futures = {pool.submit(run_task_reported, p, str(results_dir), device, threads): p for p in payloads}
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except SweepInterrupted:
                raise
            except Exception as exc:  # the worker died (BrokenProcessPool) or its result did not pickle
                result = task_failure(futures[fut], exc)
            on_done(result)
        finished = True
    finally:
        if not finished:  # interrupted (signal, Ctrl-C, a bug in on_done): no worker may go on alone
            _stop_workers(pool)
        pool.shutdown(wait=finished, cancel_futures=not finished)


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
        remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=threads or 1)(run_task_reported)
        payloads = {}
        for t in tasks:
            ref = remote.remote(asdict(t), str(Path(results_dir).resolve()), device, threads)
            payloads[ref] = asdict(t)
        pending = list(payloads)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    result = ray.get(ref)
                except SweepInterrupted:
                    raise
                except Exception as exc:  # the Ray worker died or the task could not be shipped
                    result = task_failure(payloads[ref], exc)
                on_done(result)
    finally:
        if started_here:
            ray.shutdown()


EXECUTORS = {"local": run_local, "ray": run_ray}


def run_sweep(grid: Grid, results_dir: Path, *, executor: str = "local", workers: int = 1, device: str | None = None,
              threads: int | None = None, progress: bool | None = None, log: Callable[[str], None] = print,
              ray_address: str | None = None) -> dict[str, Any]:
    """Run what is missing of ``grid``. A failing task is logged (``failed: <cell>: <error>``) and the
    sweep goes on; the summary counts it in ``failed`` and describes it in ``failures`` (``cell``,
    ``task``, ``error``, ``type``, ``traceback``). SIGTERM/SIGHUP stop the workers and raise
    :class:`SweepInterrupted`."""
    from tqdm.auto import tqdm

    if executor not in EXECUTORS:
        raise DcrobenchError(unknown_name_message("executor", executor, EXECUTORS))
    if not isinstance(workers, int) or workers < 1:
        raise DcrobenchError("--workers must be at least 1")
    check_threads(threads)
    tasks, done, unresolved = pending_tasks(grid, results_dir)
    total = len(tasks) + done + len(unresolved)
    log(f"grid {grid.name}: {total} tasks, {done} done, {len(tasks)} to run ({executor}, {workers} worker(s))")
    summary: dict[str, Any] = {"tasks": total, "already_done": done, "ran": 0, "failed": 0, "failures": [],
                               "computed": {}, "loaded": {}}
    bar = tqdm(total=total, initial=done, desc=f"sweep {grid.name}", unit="task", disable=None if progress is None else not progress)

    def fail(result: dict) -> None:
        cell = Task.from_payload(result["task"]).cell
        summary["failed"] += 1
        summary["failures"].append({"cell": cell, **result})
        log(f"failed: {cell}: {result['error']}")

    def on_done(result: dict) -> None:
        if "error" in result:
            fail(result)
        else:
            summary["ran"] += 1
            for k in ("computed", "loaded"):
                for stage, n in result[k].items():
                    summary[k][stage] = summary[k].get(stage, 0) + n
        bar.update(1)
        finished = summary["ran"] + summary["failed"] - len(unresolved)
        running = max(0, min(workers, len(tasks) - finished))
        bar.set_postfix(done=done + summary["ran"], failed=summary["failed"], running=running,
                        left=max(0, len(tasks) - finished - running))

    run = EXECUTORS[executor]
    if executor == "ray" and ray_address:
        run = functools.partial(run, address=ray_address)
    try:
        for failure in unresolved:
            on_done(failure)
        with stop_on_signals():
            run(tasks, results_dir, device, threads, workers, on_done)
    except SweepInterrupted as exc:
        left = len(tasks) - (summary["ran"] + summary["failed"] - len(unresolved))
        raise SweepInterrupted(exc.signum, f"{exc}: workers stopped, {summary['ran']} task(s) finished, {left} not; "
                                           f"re-run the same command to resume") from None
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
