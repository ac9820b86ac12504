"""Sweeps: run what is missing of a grid, in this process, a local process pool, or on Ray.

The grid file format is :mod:`dcrobench.grid`; one task is run by :mod:`dcrobench.tasks`; worker
processes and stop signals are handled by :mod:`dcrobench.workers`. Each task writes its records
itself, so executors only schedule; a killed sweep re-run skips finished records and, through the
stage cache, finished stages.

A task that fails (any exception, in-process or in a worker) is reported as one line naming its
cell and the sweep goes on; the summary lists every failure (``failed``, ``failures``). Worker
processes never outlive the sweep, and a SIGTERM to the parent stops the workers and ends the sweep
with :class:`SweepInterrupted`.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .device import check_threads
from .errors import DcrobenchError
from .grid import Cell, CostEstimate, Grid, Task, grid_status, load_grid, task_cells
from .names import unknown_name_message
from .tasks import describe_error, run_task_reported, task_failure
from .workers import SweepInterrupted, stop_on_signals, stop_workers, worker_init

# what callers of a sweep use, beside run_sweep: the grid, its status and the stop signal's error
__all__ = ["EXECUTORS", "Grid", "SweepInterrupted", "Task", "grid_progress", "grid_status", "load_grid", "pending_tasks",
           "run_local", "run_ray", "run_sweep"]


def pending_tasks(grid: Grid, results_dir: Path) -> tuple[list[Task], int, list[dict[str, Any]]]:
    """(tasks to run, number already done, failures of tasks whose cells could not even be resolved).

    A configuration error (a ``DcrobenchError``: unknown name, bad parameter) refuses the whole sweep
    before any work, naming the task; anything else (a plugin's bug) fails that task only.
    """
    tasks, done, failed, _ = grid_progress(grid, results_dir)
    return tasks, done, failed


def grid_progress(grid: Grid, results_dir: Path) -> tuple[list[Task], int, list[dict[str, Any]], list[Cell]]:
    """:func:`pending_tasks`, and the cells of every task that could be resolved (each protocol parsed once)."""
    tasks, done, failed, all_cells = [], 0, [], []
    protocols: dict[str, Any] = {}
    for task in grid.tasks():
        try:
            cells = Cell.of_task(task, task_cells(task, results_dir, protocols))
        except DcrobenchError as exc:
            raise DcrobenchError(f"grid {grid.name}, task {task.cell}: {describe_error(exc)}") from None
        except Exception as exc:
            failed.append(task_failure(asdict(task), exc))
            continue
        all_cells += cells
        if all(c.done for c in cells):
            done += 1
        else:
            tasks.append(task)
    return tasks, done, failed, all_cells


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
    except KeyboardInterrupt:
        logging.getLogger("dcrobench").warning(
            "interrupted: stopping %d worker(s); finished records and stages are kept, re-run the same command to resume",
            workers)
        raise
    finally:
        if not finished:  # interrupted (signal, Ctrl-C, a bug in on_done): no worker may go on alone
            stop_workers(pool)
        pool.shutdown(wait=finished, cancel_futures=not finished)


#: re-runs of a Ray task lost to a dead worker or node (Ray's default, made explicit: sweeps rely on it); a task
#: that raises is never retried, it reports its failure
RAY_TASK_RETRIES = 3


def run_ray(tasks: Iterable[Task], results_dir: Path, device: str | None, threads: int | None, workers: int,
            on_done: Callable[[dict], None], address: str | None = None) -> None:
    """Each task a Ray task (one GPU when the cluster has GPUs); records go to the shared results folder.

    A task whose worker or node dies is run again (``RAY_TASK_RETRIES`` times): the re-run skips the records the
    lost run wrote, loads its finished stages, and its claims died with it (``tests/test_ray_cluster.py``)."""
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
        remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=threads or 1,
                            max_retries=RAY_TASK_RETRIES)(run_task_reported)
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
    tasks, done, unresolved, cells = grid_progress(grid, results_dir)
    total = len(tasks) + done + len(unresolved)
    estimate = CostEstimate.of(cells).phrase()  # the work of all missing cells, at one worker's pace
    log(f"grid {grid.name}: {total} tasks, {done} done, {len(tasks)} to run ({executor}, {workers} worker(s))"
        + (f"; {estimate}" if estimate else ""))
    summary: dict[str, Any] = {"tasks": total, "already_done": done, "ran": 0, "failed": 0, "failures": [],
                               "computed": {}, "loaded": {}}
    bar = tqdm(total=total, initial=done, desc=f"sweep {grid.name}", unit="task", disable=None if progress is None else not progress)

    def fail(result: dict) -> None:
        cell = Task.from_payload(result["task"]).cell
        summary["failed"] += 1
        summary["failures"].append({"cell": cell, **result})
        log(f"failed: {cell}: {result['error']}")

    started = time.perf_counter()

    def task_line(result: dict) -> None:
        """One line per finished task: which cell, its seconds, stages computed or loaded, done/total."""
        stages = ", ".join(f"{how} {sum(result[how].values())}" for how in ("computed", "loaded") if result[how])
        line = (f"[{done + summary['ran'] + summary['failed']}/{total}] {Task.from_payload(result['task']).cell}: "
                f"{result['records']} record(s) in {result['seconds']:.1f} s (stages {stages or 'none'}; "
                f"{time.perf_counter() - started:.0f} s elapsed)")
        if bar.disable:
            log(line)
        else:
            bar.write(line, file=sys.stderr)

    def on_done(result: dict) -> None:
        if "error" in result:
            fail(result)
        else:
            summary["ran"] += 1
            for k in ("computed", "loaded"):
                for stage, n in result[k].items():
                    summary[k][stage] = summary[k].get(stage, 0) + n
            task_line(result)
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
