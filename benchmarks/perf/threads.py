"""Which torch thread count to use by default: README command 1's job timed under each setting.

Each configuration runs ``dcrobench run --method random --dataset mnist5k --protocol quick`` from an
empty cache and results folder, idle and with another process keeping one core busy (a pure-Python
spin loop, as a second user or a notebook would). Writes a markdown table (seconds and the ratio to
1 thread in the same condition, measured in this one run) to stdout or ``--out``.

    python benchmarks/perf/threads.py --out benchmarks/perf/threads.md
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = [  # (label, --threads value, extra environment)
    ("torch default (all cores)", None, {}),
    ("1 thread", "1", {}),
    ("all cores, OMP_WAIT_POLICY=PASSIVE", str(os.cpu_count()), {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("auto (the default)", "auto", {}),
]


def _spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def time_run(threads: str | None, env_extra: dict[str, str], seeds: int | None) -> float:
    work = Path(tempfile.mkdtemp(prefix="dcrobench-threads-"))
    env = {**os.environ, "DCROBENCH_CACHE": str(work / "cache"), **env_extra}
    cmd = [sys.executable, "-m", "dcrobench.cli", "run", "-m", "random", "-d", "mnist5k", "-p", "quick", "--no-progress",
           "-q", "--results", str(work / "results")]
    if seeds is not None:
        cmd += ["--seeds", str(seeds)]
    if threads is not None:
        cmd += ["--threads", threads]
    else:
        cmd += ["--threads", "torch"]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=None, help="default: the protocol's, as README command 1")
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = []
    for condition in ("idle", "one core busy"):
        stop = mp.Event()
        spinner = mp.Process(target=_spin, args=(stop,)) if condition != "idle" else None
        if spinner:
            spinner.start()
            time.sleep(1.0)
        try:
            times = {label: time_run(threads, env, args.seeds) for label, threads, env in CONFIGS}
        finally:
            if spinner:
                stop.set()
                spinner.join()
        base = times["1 thread"]
        rows += [f"| {condition} | {label} | {t:.1f} | {t / base:.2f} |" for label, t in times.items()]
    text = "\n".join([f"README command 1's job (random, mnist5k, quick, {args.seeds or 'the protocol default'} seed(s)), "
                      f"{os.cpu_count()} cores, "
                      "one run of this script:", "",
                      "| machine | threads | seconds | × 1 thread |", "|---|---|---|---|", *rows, ""])
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
