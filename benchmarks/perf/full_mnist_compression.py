"""Compression time of every method on the full MNIST (60,000 images, classes of 5,421-6,742), at 50 and 500 per class.

Each (method, budget) runs ``dcrobench compress`` in a subprocess with its own empty cache (so the time
includes every proxy model the method trains, as a record's ``compress_s`` does) and a wall-clock cap;
a run past the cap is reported as unfinished. Parameters are ``--protocol``'s (default
``appendix-c-mnist``: the MLP proxy), each method's own block from the ``paper`` protocol where that
protocol has none.

Dataset-condensation methods run thousands of iterations (DM and IDM 20,000; TM, MAT and GUARD 5,000
plus 100 expert trajectories): no CPU finishes them at the paper's settings. They are probed at 2 and
4 iterations (1 expert of 2 epochs for the trajectory methods), and the table projects the paper's
settings from the per-iteration time (experts projected from the one-expert-epoch probe).

    python benchmarks/perf/full_mnist_compression.py --data-root DIR [--cap 600] [--out full_mnist_compression.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dcrobench.protocol import load_protocol
from dcrobench.registry import registries

PROBE_ITERATIONS = (2, 4)
DATASET = ["mnist"]  # set from --dataset (a small set for a dry run)
#: the trajectory methods' probe: one expert of two epochs (the smallest their own checks accept)
EXPERT_KEYS = {"num_experts": 1, "expert_train_epochs": 2, "max_start_epoch": 1, "expert_epochs": 1}


def protocol_file(base: str, method: str, overrides: dict, folder: Path) -> Path:
    """A protocol YAML: ``base`` with the method's block from ``paper`` (when base has none) and ``overrides``."""
    proto = load_protocol(base)
    raw = yaml.safe_load(Path(proto.source).read_text()) if Path(proto.source).is_file() else None
    if raw is None:
        from importlib.resources import files

        raw = yaml.safe_load(files("dcrobench_protocols").joinpath(f"{base}.yaml").read_text())
    block = dict(raw.get("methods", {}).get(method) or load_protocol("paper").methods.get(method, {}))
    raw.setdefault("methods", {})[method] = {**block, **overrides}
    path = folder / f"{method}-{abs(hash(json.dumps(overrides, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def timed_compress(method: str, budget: int, protocol: Path, data_root: str | None, cap: float,
                   threads: int) -> tuple[float | None, str]:
    """Seconds of one cold ``dcrobench compress`` (None past the cap), and the last line it printed."""
    with tempfile.TemporaryDirectory(prefix="dcrobench-compress-") as tmp:
        env = {**os.environ, "DCROBENCH_CACHE": tmp}
        cmd = [sys.executable, "-m", "dcrobench.cli", "compress", "--method", method, "--dataset", DATASET[0],
               "--budget", str(budget), "--protocol", str(protocol), "--out", f"{tmp}/set.pt",
               "--threads", str(threads)] + (["--data-root", data_root] if data_root else [])
        start = time.perf_counter()
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=cap)
        except subprocess.TimeoutExpired:
            return None, f"unfinished after {cap:.0f} s"
        seconds = time.perf_counter() - start
        last = (done.stderr.strip().splitlines() or [""])[-1]
        if done.returncode < 0:  # SIGKILL with no output is the kernel's OOM killer, as a rule: say so
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
            return None, f"killed by signal {-done.returncode} after {seconds:.0f} s (peak resident memory {peak:.1f} GB)"
        return (seconds, last) if done.returncode == 0 else (None, f"failed: {last}")


def condensation_row(method: str, budget: int, args, folder: Path) -> str:
    paper = load_protocol("paper").methods.get(method, {})
    experts = "num_experts" in paper
    times = []
    for its in PROBE_ITERATIONS:
        over = {"iterations": its, **(EXPERT_KEYS if experts else {})}
        seconds, note = timed_compress(method, budget, protocol_file(args.protocol, method, over, folder),
                                       args.data_root, args.cap, args.threads)
        if seconds is None:
            return f"| {method} | {budget} | – | {note} (probe of {its} iterations) |"
        times.append(seconds)
    per_it = max((times[1] - times[0]) / (PROBE_ITERATIONS[1] - PROBE_ITERATIONS[0]), 0.0)
    fixed = times[0] - PROBE_ITERATIONS[0] * per_it
    total = per_it * paper.get("iterations", 0)
    detail = f"{per_it:.1f} s/iteration × {paper.get('iterations')}"
    if experts:
        expert_epochs = paper["num_experts"] * paper["expert_train_epochs"]
        per_expert_epoch = fixed / EXPERT_KEYS["expert_train_epochs"]
        total += per_expert_epoch * expert_epochs
        detail += f" + {per_expert_epoch:.0f} s/expert-epoch × {expert_epochs}"
    return f"| {method} | {budget} | projected {total / 3600:.1f} h | probed: {detail} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--protocol", default="appendix-c-mnist")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-root", default=None, help="default: where dcrobench run reads data")
    ap.add_argument("--budgets", type=int, nargs="+", default=[50, 500])
    ap.add_argument("--methods", nargs="*", default=None, help="default: every registered method but full")
    ap.add_argument("--cap", type=float, default=600.0, help="seconds per run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    DATASET[0] = args.dataset
    if args.data_root is None:  # each run gets its own cache, and with it another default data root
        from dcrobench.cache import cache_root

        args.data_root = str(cache_root() / "data")

    methods = registries().methods
    names = args.methods or [n for n in methods if n != "full"]
    lines = [f"| method | per class | seconds | note |", "|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory(prefix="dcrobench-protocols-") as folder:
        for name in names:
            for budget in args.budgets:
                if methods.get(name).kind == "condensation":
                    line = condensation_row(name, budget, args, Path(folder))
                else:
                    cap = args.cap
                    if name == "mcs":  # its own time limit per class bounds it: give it that
                        limit = load_protocol(args.protocol).methods.get("mcs", {}).get("time_limit") or 600
                        cap = max(cap, 10 * 1.1 * limit + 120)
                    seconds, note = timed_compress(name, budget, protocol_file(args.protocol, name, {}, Path(folder)),
                                                   args.data_root, cap, args.threads)
                    line = f"| {name} | {budget} | {'–' if seconds is None else f'{seconds:.1f}'} | {note if seconds is None else ''} |"
                lines.append(line)
                print(line, flush=True)
    if args.out:
        args.out.write_text(f"# Compression time on full MNIST, measured {time.strftime('%Y-%m-%d')}\n\n"
                            f"`python benchmarks/perf/full_mnist_compression.py --cap {args.cap:.0f} --threads "
                            f"{args.threads}` (protocol {args.protocol}; cold cache per run: proxies included)\n\n"
                            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
