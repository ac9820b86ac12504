"""Running one sweep task, and turning its failure into a one-line, picklable report.

A task (see :class:`dcrobench.grid.Task`) writes its records itself (atomic, collision-free
names), so executors only schedule. The functions here run in worker processes and Ray workers:
they take and return plain data, and stay top-level so they pickle by module path.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

from .errors import DcrobenchError, one_line
from .grid import Task
from .workers import SweepInterrupted


def run_task(task: dict[str, Any], results_dir: str, device: str | None, threads: int | None) -> dict[str, Any]:
    """Run one task (picklable: executed in worker processes and Ray workers)."""
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
