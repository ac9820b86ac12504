"""The stage cache at work: a second sweep that adds one seed costs about 1/N of the first (N seeds).

Runs a grid with seeds 0..N-1 into a fresh results folder, then the same grid with seeds 0..N, and
prints both wall times, their ratio and 1/N. The second sweep skips every finished record, and
deterministic methods (e.g. mcs) reuse their compressed set from the stage cache.

    python benchmarks/perf/sweep_stage_cache.py [--seeds 3] [--methods random,herding,mcs] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default="random,herding,mcs")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--budgets", default="10")
    ap.add_argument("--protocol", default="quick")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from dcrobench.scheduler import load_grid, run_sweep

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["DCROBENCH_CACHE"] = str(tmp / "cache")  # cold proxy / MCS caches for the first sweep
        os.environ["TQDM_DISABLE"] = "1"

        def grid(n_seeds: int) -> Path:
            path = tmp / f"grid{n_seeds}.yaml"
            path.write_text(yaml.safe_dump({
                "name": "bench", "protocol": args.protocol, "methods": args.methods.split(","),
                "grid": [{"datasets": [args.dataset], "budgets": [int(b) for b in args.budgets.split(",")],
                          "norms": ["linf"], "seeds": list(range(n_seeds))}]}))
            return path

        timings = []
        for n in (args.seeds, args.seeds + 1):
            start = time.perf_counter()
            summary = run_sweep(load_grid(grid(n)), tmp / "results", threads=args.threads, progress=False, log=lambda m: None)
            timings.append(time.perf_counter() - start)
            print(f"sweep with {n} seeds: {timings[-1]:.1f} s; ran {summary['ran']} tasks, "
                  f"skipped {summary['already_done']}; stages computed {summary['computed']}, loaded {summary['loaded']}")
    ratio = timings[1] / timings[0]
    print(f"second / first = {ratio:.3f}; goal <= 1/N = {1 / args.seeds:.3f} -> {'met' if ratio <= 1 / args.seeds else 'NOT met'}")


if __name__ == "__main__":
    main()
