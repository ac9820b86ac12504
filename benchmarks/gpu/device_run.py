"""One device session, in a fixed time budget: what a lent GPU machine runs (issue 34; README.md beside this file).

Parts, in order: (a) the environment (nvidia-smi, torch, CUDA, the GPU), (b) the CUDA-only tests, (c) one
`paper` cell (random, 1 seed, linf) timed stage by stage, then the time left is split between (d) the grid
``benchmarks/grids/table1-mnist.yaml`` (``dcrobench sweep``) and (e) DM-500 on full MNIST under
``appendix-c-mnist`` (``dcrobench compress``, seed by seed); (f) every record, the DM sets and the
unfinished condensation checkpoints are copied to ``--out``, with ``summary.md``.

Every heavy part is a dcrobench command in a subprocess, stopped at its deadline by SIGINT (Ctrl-C, which
dcrobench handles): finished records, stages and DM checkpoints are kept, so running the same command again
resumes. Not SIGTERM: one that lands in a method's compress stage is reported as that task's failure and the
sweep goes on (CompressionMethod.run wraps SweepInterrupted in a MethodError). ``--pack`` (the default) then
folds ``--out`` into a few files: the device tool returns at most 8 files of 16 MiB from ``$OUT``.

    python benchmarks/gpu/device_run.py --budget-s 450 --out "$OUT" --state benchmarks/gpu/state \\
        --mnist-gz benchmarks/gpu/data/mnist
    python benchmarks/gpu/device_run.py --restore FILES_AT --state benchmarks/gpu/state   # back here, before a rerun
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

#: what the device tool returns from $OUT: at most 8 files of at most 16 MiB, 64 MiB in all
MAX_FILES, MAX_FILE_BYTES, MAX_TOTAL_BYTES = 8, 16 * 2**20, 64 * 2**20
#: files that stay as they are in --out when it is packed; everything else goes into bundle.tar.gz.NN
TOP_FILES = ("summary.md", "env.json", "stage-timings.md")
PART_BYTES = MAX_FILE_BYTES - 2**20
#: a command started with less time than this would spend it on imports and data loading
MIN_START_S = 15.0
BUNDLE = "bundle.tar.gz"

#: one stage line of `dcrobench run` (dcrobench/runner.py, stage_line)
STAGE_LINE = re.compile(r"^(?P<cell>.+?) · (?P<stage>.+): (?P<how>computed|loaded from the stage cache) "
                        r"\((?P<seconds>[0-9.]+) s; (?P<elapsed>[0-9]+) s elapsed\)$")
#: the line `dcrobench run` ends a cell with
RECORD_LINE = re.compile(r"^seed \d+ \w+: standard score .* -> (?P<path>.+\.json)$", re.M)

ENV_PROBE = r"""
import json, os, platform
import torch, dcrobench
from dcrobench.registry import registries
cuda = torch.cuda.is_available()
info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None, "dcrobench": dcrobench.__version__,
        "plugin_failures": [str(f) for f in registries().failures]}
if cuda:
    p = torch.cuda.get_device_properties(0)
    info.update(device_count=torch.cuda.device_count(), device_name=p.name, capability=f"{p.major}.{p.minor}",
                memory_gib=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count)
print(json.dumps(info))
"""


# ---------------------------------------------------------------------------------------------- plumbing
@dataclass
class Part:
    """One part of the session, as summary.md reports it."""

    name: str
    status: str = "not started"
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)
    #: condensation checkpoints of runs it left unfinished: they come back, so a later session continues them
    checkpoints: list[Path] = field(default_factory=list)
    #: checkpoints of runs it finished: --restore deletes them here, so they are not carried again
    finished: list[Path] = field(default_factory=list)


@dataclass
class Outcome:
    rc: int | None
    stopped: bool  # stopped at the deadline (then rc is whatever the stop left)
    seconds: float


class Clock:
    """The session's wall clock: ``budget_s`` from start, ``reserve_s`` of it kept for copying and packing."""

    def __init__(self, budget_s: float, reserve_s: float) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + budget_s - reserve_s

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def dcrobench_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dcrobench.cli", *args]


def run_until(cmd: list[str], deadline: float, log: Path, stop: int = signal.SIGINT, grace_s: float = 30.0,
              env: dict[str, str] | None = None) -> Outcome:
    """Run ``cmd`` (output to ``log``) until it ends or ``deadline`` (time.monotonic); then send ``stop``, wait
    ``grace_s`` for it to say what it kept, and kill it if it has not ended. Never a new session: the device
    tool ends leftover processes of the command only when they stay in its session."""
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            return Outcome(proc.wait(timeout=max(0.0, deadline - time.monotonic())), False, time.monotonic() - started)
        except subprocess.TimeoutExpired:
            proc.send_signal(stop)
        try:
            rc = proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        return Outcome(rc, True, time.monotonic() - started)


def guarded(name: str, fn, *args) -> Part:
    """``fn(*args)``, or a failed Part when it raises: one broken part never costs the others their time."""
    started = time.monotonic()
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - reported in summary.md, the session goes on
        detail = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        return Part(name, f"failed: {detail[:300]}", time.monotonic() - started)


def tail(path: Path, n: int = 3) -> list[str]:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [line for line in lines if line.strip()][-n:]


# ---------------------------------------------------------------------------------------------- (a) environment
def record_environment(args: argparse.Namespace, env: dict[str, str]) -> tuple[Part, dict]:
    part = Part("environment")
    started = time.monotonic()
    smi = shutil.which("nvidia-smi")
    if smi:
        text = subprocess.run([smi], capture_output=True, text=True, timeout=60).stdout
        text += subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,"
                                     "temperature.gpu,power.draw", "--format=csv"],
                               capture_output=True, text=True, timeout=60).stdout
    else:
        text = "nvidia-smi: absent (no NVIDIA driver on this machine)\n"
    (args.out / "nvidia-smi.txt").write_text(text)
    probe = subprocess.run([sys.executable, "-c", ENV_PROBE], capture_output=True, text=True, env=env, cwd=REPO)
    if probe.returncode != 0:
        info = {"error": probe.stderr.strip().splitlines()[-1:] or ["probe failed"]}
        part.status = "failed: dcrobench or torch does not import"
    else:
        info = json.loads(probe.stdout.strip().splitlines()[-1])
        part.status = "ok"
        part.lines.append(f"torch {info['torch']} (CUDA {info['torch_cuda']}), "
                          f"{info.get('device_name', 'no CUDA device')}, {info['cpus']} CPUs")
        if info["plugin_failures"]:
            part.status = "ok, but plugins failed to load"
            part.lines += [f"plugin failure: {f}" for f in info["plugin_failures"]]
    info.update(nvidia_smi=bool(smi), budget_s=args.budget_s, argv=sys.argv[1:])
    (args.out / "env.json").write_text(json.dumps(info, indent=2) + "\n")
    part.seconds = time.monotonic() - started
    return part, info


def import_mnist(args: argparse.Namespace, env: dict[str, str]) -> Part:
    """Full MNIST from the carried .gz files: `dcrobench data import` checks every file's md5 and installs it."""
    part = Part("MNIST import")
    files = sorted(args.mnist_gz.glob("*.gz")) if args.mnist_gz else []
    if not files:
        part.status = "skipped: no --mnist-gz files"
        return part
    log = args.out / "logs" / "data-import.log"
    outcome = run_until(dcrobench_cli("data", "import", "mnist", *map(str, files), "--data-root", str(args.data_root)),
                        time.monotonic() + 300, log, env=env)
    part.seconds = outcome.seconds
    part.status = "ok" if outcome.rc == 0 else f"failed (exit {outcome.rc})"
    part.lines = tail(log, 1)
    return part


# ---------------------------------------------------------------------------------------------- (b) CUDA tests
def run_cuda_tests(args: argparse.Namespace, env: dict[str, str], cuda: bool, clock: Clock) -> Part:
    part = Part("CUDA tests")
    out = args.out / "cuda-tests.txt"
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--continue-on-collection-errors",
           "-k", args.tests_k, "tests"]
    outcome = run_until(cmd, min(clock.deadline, time.monotonic() + args.tests_max_s), out, env=env)
    part.seconds = outcome.seconds
    last = tail(out, 1)
    verdict = last[0].strip("= ") if last else "no output"
    if outcome.stopped:
        part.status = f"stopped after {args.tests_max_s:.0f} s: {verdict}"
    elif not cuda:
        part.status = f"no CUDA here: the tests skip ({verdict})"
    else:
        part.status = "passed" if outcome.rc == 0 else f"FAILED (exit {outcome.rc}): {verdict}"
    return part


# ---------------------------------------------------------------------------------------------- (c) one timed cell
def parse_stage_lines(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        m = STAGE_LINE.match(line.strip())
        if m:
            rows.append({"stage": m["stage"], "seconds": float(m["seconds"]), "cached": m["how"] != "computed",
                         "cell": m["cell"]})
    return rows


def cell_record_path(protocol: str, dataset: str, results: Path) -> Path:
    """Where the timed cell's record lives (the grid's first cell when the protocols agree)."""
    from dcrobench.grid import Task, task_cells
    from dcrobench.protocol import load_protocol

    proto = load_protocol(protocol)
    task = Task(protocol, "random", dataset, proto.budget, 0, (proto.model,), ("linf",))
    return task_cells(task, results)[0][1]


def costs_from_record(path: Path) -> list[dict]:
    """A recorded cell's stage costs (coarser than stage lines: both trainings and both attacks summed)."""
    cost = json.loads(path.read_text())["cost"]
    cached = cost.get("cached", {})
    return [{"stage": "compress", "seconds": cost["compress_s"], "cached": cached.get("compress", True)},
            {"stage": "train standard + adversarial", "seconds": cost["train_s"],
             "cached": cached.get("standard", True) and cached.get("adversarial", True)},
            {"stage": "attack both models", "seconds": cost["eval_s"], "cached": cached.get("attack", True)}]


def stage_table(rows: list[dict]) -> str:
    lines = ["| stage | seconds | from the stage cache |", "|---|---:|---|"]
    lines += [f"| {r['stage']} | {r['seconds']:.1f} | {'yes' if r['cached'] else 'no'} |" for r in rows]
    return "\n".join(lines) + "\n"


def time_cell(args: argparse.Namespace, env: dict[str, str], clock: Clock) -> Part:
    """`dcrobench run` of one cell; its stage lines (or, when it was already recorded, its record) give the table."""
    part = Part(f"timed cell: random {args.cell_dataset} linf s0 ({Path(args.protocol).stem})")
    if clock.left() < MIN_START_S:
        part.status = f"skipped: {clock.left():.0f} s left"
        return part
    log = args.out / "logs" / "cell.log"
    cmd = dcrobench_cli("run", "--method", "random", "--dataset", args.cell_dataset, "--protocol", args.protocol,
                        "--seeds", "1", "--norm", "linf", "--results", str(args.results), "--data-root",
                        str(args.data_root), "--threads", args.threads, "--no-progress", *device_flag(args))
    outcome = run_until(cmd, clock.deadline, log, env=env)
    text = log.read_text()
    rows, source = parse_stage_lines(text), "stage lines of `dcrobench run`"
    written = RECORD_LINE.search(text)
    record = Path(written["path"]) if written else None
    if not rows:  # already recorded: no stage lines, but the record has the costs
        record = cell_record_path(args.protocol, args.cell_dataset, args.results)
        if record.exists():
            rows, source = costs_from_record(record), f"the record (already recorded): {record}"
    part.seconds = outcome.seconds
    part.status = ("stopped at the deadline" if outcome.stopped else
                   "ok" if outcome.rc == 0 else f"failed (exit {outcome.rc})")
    part.lines = [f"{len(rows)} stages from {source}; wall {outcome.seconds:.1f} s"] + (tail(log) if outcome.rc else [])
    timings = {"cell": part.name, "protocol": args.protocol, "dataset": args.cell_dataset, "wall_s": outcome.seconds,
               "status": part.status, "source": source,
               "record": str(record) if record and record.exists() else None,
               "stages": rows}
    (args.out / "stage-timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    (args.out / "stage-timings.md").write_text(
        f"# Stage timings: {part.name}\n\n{part.status}; wall {outcome.seconds:.1f} s; from {source}.\n\n"
        + stage_table(rows))
    return part


# ---------------------------------------------------------------------------------------------- (d) grid, (e) DM
def split_budget(left_s: float, dm_share: float, grid_pending: bool, dm_pending: bool) -> float:
    """Seconds the grid may use first; DM then gets everything left (at least ``dm_share`` of ``left_s``).

    A part with nothing to do gives its share to the other."""
    if not grid_pending:
        return 0.0
    return left_s * (1.0 - dm_share) if dm_pending else left_s


def pending_grid_tasks(grid: Path, results: Path) -> list[str]:
    from dcrobench.scheduler import load_grid, pending_tasks

    tasks, _, unresolved = pending_tasks(load_grid(grid), results)
    return [t.label for t in tasks] + [f"{u['task']['method']} (unresolved)" for u in unresolved]


def guarded_pending(args: argparse.Namespace) -> list[str]:
    """The grid's pending tasks; a grid that cannot be read counts as pending (run_grid then reports why)."""
    try:
        return pending_grid_tasks(args.grid, args.results)
    except Exception:  # noqa: BLE001
        return ["?"]


def run_grid(args: argparse.Namespace, env: dict[str, str], seconds: float) -> Part:
    part = Part(f"grid {Path(args.grid).name}")
    before = pending_grid_tasks(args.grid, args.results)
    if not before:
        part.status = "all done before this session"
        return part
    if seconds < MIN_START_S:
        part.status = f"skipped: {seconds:.0f} s left ({len(before)} tasks pending)"
        return part
    log, since = args.out / "logs" / "sweep.log", time.time()
    cmd = dcrobench_cli("sweep", str(args.grid), "--results", str(args.results), "--workers", str(args.sweep_workers),
                        "--threads", args.threads, "--no-progress", *device_flag(args))
    outcome = run_until(cmd, time.monotonic() + seconds, log, env=env)
    after = pending_grid_tasks(args.grid, args.results)
    failed = [line for line in log.read_text().splitlines() if line.startswith("failed: ")]
    part.seconds = outcome.seconds
    part.status = (f"stopped at its deadline ({seconds:.0f} s)" if outcome.stopped else
                   "finished" if outcome.rc == 0 else f"ended with exit {outcome.rc}")
    touched = latest_checkpoints(args.cache, since, n=10**6)
    if outcome.stopped:  # the tasks it stopped: the newest checkpoints of pending methods, one per worker
        pending_methods = {label.split("/")[0] for label in after}
        part.checkpoints = [c for c in touched if c.name.split("-")[0] in pending_methods][-args.sweep_workers:]
    part.finished = [c for c in touched if c not in part.checkpoints]
    left = f"{len(after)} left: {', '.join(after[:12])}{' …' if len(after) > 12 else ''}" if after else "none left"
    part.lines = [f"{len(before) - len(after)} of {len(before)} pending tasks done this session; {left}", *failed,
                  *tail(log, 2)]
    return part


def dm_file(args: argparse.Namespace, seed: int) -> Path:
    return args.dm_dir / f"dm{args.dm_budget}-s{seed}.pt"


def dm_done(args: argparse.Namespace, seed: int) -> bool:
    """A seed is done when its set, or the marker left when the set was taken away, exists."""
    path = dm_file(args, seed)
    return path.exists() or path.with_suffix(".done").exists()


def latest_checkpoints(cache: Path, since: float, n: int = 1, prefix: str = "") -> list[Path]:
    """The ``n`` condensation checkpoints (``<method>-<key>.ckpt.pt``) written last since ``since`` (time.time)."""
    folder = cache / "condensation"
    found = [p for p in folder.glob(f"{prefix}*.ckpt.pt") if p.stat().st_mtime >= since] if folder.exists() else []
    return sorted(found, key=lambda p: p.stat().st_mtime)[-n:]


def checkpoint_iteration(path: Path) -> int | None:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["iteration"])
    except Exception:
        return None


def compress_dm(args: argparse.Namespace, env: dict[str, str], clock: Clock) -> Part:
    part = Part(f"DM-{args.dm_budget} ({Path(args.dm_protocol).stem}, {args.dm_dataset})")
    started = time.monotonic()
    for seed in args.dm_seeds:
        if dm_done(args, seed):
            part.lines.append(f"seed {seed}: {dm_file(args, seed).name} exists, skipped")
            continue
        if clock.left() < MIN_START_S:
            part.lines.append(f"seed {seed}: not started, {clock.left():.0f} s left")
            continue
        since, log = time.time(), args.out / "logs" / f"dm-s{seed}.log"
        out = dm_file(args, seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = dcrobench_cli("compress", "--method", "dm", "--dataset", args.dm_dataset, "--budget",
                            str(args.dm_budget), "--seed", str(seed), "--protocol", args.dm_protocol, "--out", str(out),
                            "--data-root", str(args.data_root), "--threads", args.threads, *device_flag(args))
        outcome = run_until(cmd, clock.deadline, log, env=env)
        if out.exists():
            out.with_suffix(".done").write_text(f"{outcome.seconds:.1f} s this session\n")
            part.finished += latest_checkpoints(args.cache, since, n=10**6, prefix="dm-")
            part.lines.append(f"seed {seed}: wrote {out.name} in {outcome.seconds:.1f} s")
            continue
        ckpt = latest_checkpoints(args.cache, since, prefix="dm-")
        part.checkpoints += ckpt
        where = f"checkpoint at iteration {checkpoint_iteration(ckpt[0])} kept ({ckpt[0].name})" if ckpt else \
            "no checkpoint"
        why = "stopped at the deadline" if outcome.stopped else f"failed (exit {outcome.rc}): {' '.join(tail(log, 1))}"
        part.lines.append(f"seed {seed}: {why} after {outcome.seconds:.1f} s; {where}")
    part.seconds = time.monotonic() - started
    done = sum(dm_done(args, s) for s in args.dm_seeds)
    part.status = f"{done} of {len(args.dm_seeds)} seeds done"
    return part


def device_flag(args: argparse.Namespace) -> list[str]:
    return ["--device", args.device] if args.device else []


# ---------------------------------------------------------------------------------------------- (f) results
def copy_results(args: argparse.Namespace, since: float, checkpoints: list[Path], finished: list[Path]) -> Part:
    """Records (not the stage cache), this session's DM sets and the unfinished runs' checkpoints, into --out."""
    part = Part("copy to --out")
    results = args.results
    records = [p for p in results.rglob("*.json")  # `_stages` and other `_` folders hold no records
               if not any(s.startswith("_") for s in p.relative_to(results).parts)] if results.exists() else []
    for path in records:
        dest = args.out / "records" / path.relative_to(args.results)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    made = [p for p in args.dm_dir.glob("*.pt") if p.stat().st_mtime >= since] if args.dm_dir.exists() else []
    for path in made:
        shutil.copy2(path, args.out / path.name)
    ckpts = [p for p in dict.fromkeys(checkpoints) if p.exists()]
    for path in ckpts:
        (args.out / "checkpoints").mkdir(exist_ok=True)
        shutil.copy2(path, args.out / "checkpoints" / path.name)
    (args.out / "finished-checkpoints.txt").write_text("".join(f"{p.name}\n" for p in dict.fromkeys(finished)))
    part.status = "ok"
    part.lines = [f"{len(records)} records, {len(made)} DM sets, {len(ckpts)} condensation checkpoints"]
    return part


def bundle_plan(out: Path) -> tuple[list[Path], list[Path]]:
    """(files to bundle, files left out): the bundle's parts and the top files must fit what the device tool
    returns. Small files first, then DM sets, then checkpoints; within each, smaller first."""
    top = sum((out / name).stat().st_size for name in TOP_FILES if (out / name).exists())
    parts_allowed = MAX_FILES - len(TOP_FILES)
    # tar adds up to 1 KiB per file (header, padding) and 10 KiB at the end; gzip can grow random bytes by ~0.1%
    room = 0.99 * min(parts_allowed * PART_BYTES, MAX_TOTAL_BYTES - top) - 10 * 1024
    rest = [p for p in sorted(out.rglob("*")) if p.is_file() and p.relative_to(out).as_posix() not in TOP_FILES]

    def rank(p: Path) -> tuple[int, int]:
        kind = 2 if p.parent.name == "checkpoints" else 1 if p.suffix == ".pt" else 0
        return kind, p.stat().st_size

    chosen, left_out, used = [], [], 0
    for p in sorted(rest, key=rank):
        size = p.stat().st_size + 1024
        if used + size <= room:
            chosen.append(p)
            used += size
        else:
            left_out.append(p)
    return chosen, left_out


def pack(out: Path, chosen: list[Path]) -> list[str]:
    """``chosen`` into bundle.tar.gz.00, .01, … of at most PART_BYTES each; every other file but the top
    files is removed (what was left out could not come back anyway)."""
    names = []
    if chosen:
        whole = out / BUNDLE
        with tarfile.open(whole, "w:gz", compresslevel=6) as tar:
            for p in chosen:
                tar.add(p, arcname=p.relative_to(out).as_posix())
        with open(whole, "rb") as src:
            while chunk := src.read(PART_BYTES):
                names.append(f"{BUNDLE}.{len(names):02d}")
                (out / names[-1]).write_bytes(chunk)
        whole.unlink()
    for p in sorted(out.rglob("*"), reverse=True):  # files, then the folders they emptied
        if p.relative_to(out).as_posix() not in TOP_FILES and p.name not in names:
            p.unlink() if p.is_file() else p.rmdir()
    return names


def write_summary(out: Path, parts: list[Part], clock: Clock, args: argparse.Namespace,
                  bundled: list[Path], left_out: list[Path], part_names: list[str]) -> None:
    lines = [f"# Device session: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", "",
             f"Budget {args.budget_s:.0f} s, used {time.monotonic() - clock.start:.0f} s. Protocol `{args.protocol}`, "
             f"grid `{args.grid}`, DM under `{args.dm_protocol}` (budget {args.dm_budget}, seeds "
             f"{', '.join(map(str, args.dm_seeds))}), DM share {args.dm_share:.0%}.", "",
             "| part | status | seconds |", "|---|---|---:|"]
    lines += [f"| {p.name} | {p.status} | {p.seconds:.1f} |" for p in parts]
    for p in parts:
        if p.lines:
            lines += ["", f"## {p.name}", "", *(f"- {line}" for line in p.lines)]
    if args.pack:
        lines += ["", "## Returned files", "", f"- top: {', '.join(n for n in TOP_FILES if (out / n).exists())}",
                  f"- {', '.join(part_names) or 'no bundle'}: {len(bundled)} files (`cat {BUNDLE}.* | tar -xz`, or "
                  f"`python benchmarks/gpu/device_run.py --restore DIR --state STATE`): "
                  + ", ".join(sorted({p.relative_to(out).parts[0] for p in bundled}))]
        lines += [f"- LEFT OUT (over the device tool's return limits): {p.relative_to(out)}" for p in left_out]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------- back here
def restore(src: Path, args: argparse.Namespace) -> None:
    """Put a returned bundle back into --state: records into the results folder, checkpoints into the cache,
    DM sets beside it with their .done markers, so the next session resumes (carry only the small parts)."""
    parts = sorted(src.glob(f"{BUNDLE}.*"))
    if not parts:
        sys.exit(f"error: no {BUNDLE}.NN files in {src}")
    unpacked = args.state / "returned" / time.strftime("%Y%m%d-%H%M%S")
    unpacked.mkdir(parents=True, exist_ok=True)
    with open(unpacked / BUNDLE, "wb") as whole:
        for p in parts:
            whole.write(p.read_bytes())
    with tarfile.open(unpacked / BUNDLE) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / BUNDLE).unlink()
    moves = [(unpacked / "records", args.results), (unpacked / "checkpoints", args.cache / "condensation")]
    for source, dest in moves:
        if source.exists():
            shutil.copytree(source, dest, dirs_exist_ok=True)
    finished = unpacked / "finished-checkpoints.txt"
    for name in finished.read_text().split() if finished.exists() else []:
        (args.cache / "condensation" / name).unlink(missing_ok=True)  # its run finished there: no need to carry it
    for dm_set in unpacked.glob("dm*-s*.pt"):
        args.dm_dir.mkdir(parents=True, exist_ok=True)
        (args.dm_dir / dm_set.with_suffix(".done").name).write_text(f"returned; the set is {dm_set}\n")
    print(f"restored into {args.state} (the returned files are in {unpacked}; keep the DM sets out of what you carry)")


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-s", type=float, default=450.0, help="wall-clock seconds for the whole session")
    ap.add_argument("--out", type=Path, help="where results go (the device tool's $OUT)")
    ap.add_argument("--state", type=Path, default=HERE / "state",
                    help="persistent folder: results/, cache/ (DCROBENCH_CACHE), dm/")
    ap.add_argument("--results", type=Path, help="results folder (default STATE/results)")
    ap.add_argument("--cache", type=Path, help="DCROBENCH_CACHE for every command (default STATE/cache)")
    ap.add_argument("--data-root", type=Path, help="datasets (default CACHE/data: `dcrobench sweep` reads only that)")
    ap.add_argument("--mnist-gz", type=Path, help="folder of the four gzipped MNIST IDX files to import")
    ap.add_argument("--protocol", default="paper", help="protocol of the timed cell")
    ap.add_argument("--cell-dataset", default="mnist", help="dataset of the timed cell")
    ap.add_argument("--grid", type=Path, default=REPO / "benchmarks" / "grids" / "table1-mnist.yaml")
    ap.add_argument("--sweep-workers", type=int, default=1, help="`dcrobench sweep --workers`")
    ap.add_argument("--dm-protocol", default="appendix-c-mnist")
    ap.add_argument("--dm-dataset", default="mnist")
    ap.add_argument("--dm-budget", type=int, default=500)
    ap.add_argument("--dm-seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2, 3, 4],
                    help="comma-separated, in order")
    ap.add_argument("--dm-dir", type=Path, help="where DM sets are written (default STATE/dm)")
    ap.add_argument("--dm-share", type=float, default=0.4,
                    help="DM's share of the time left after the timed cell when the grid also has work")
    ap.add_argument("--tests-k", default="cuda and not bad_input", help="pytest -k expression of the CUDA tests")
    ap.add_argument("--tests-max-s", type=float, default=180.0)
    ap.add_argument("--reserve-s", type=float, default=30.0, help="kept from the budget for copying and packing")
    ap.add_argument("--threads", default="auto", help="--threads of every dcrobench command")
    ap.add_argument("--device", help="--device of every dcrobench command (default: cuda when available)")
    ap.add_argument("--pack", action=argparse.BooleanOptionalAction, default=True,
                    help="fold --out into the device tool's return limits (default on)")
    ap.add_argument("--restore", type=Path, metavar="DIR",
                    help="instead of a session: put the files a session returned into --state")
    args = ap.parse_args(argv)
    args.results = args.results or args.state / "results"
    args.cache = args.cache or args.state / "cache"
    args.data_root = args.data_root or args.cache / "data"
    args.dm_dir = args.dm_dir or args.state / "dm"
    if args.restore is None and args.out is None:
        ap.error("--out is required")
    if not 0.0 <= args.dm_share <= 1.0:
        ap.error("--dm-share must be between 0 and 1")
    return args


def child_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ, DCROBENCH_CACHE=str(args.cache.resolve()), PYTHONUNBUFFERED="1")
    env.setdefault("DCROBENCH_TEST_THREADS", args.threads if args.threads.isdigit() else "1")
    return env


def session(args: argparse.Namespace) -> list[Part]:
    clock = Clock(args.budget_s, args.reserve_s)
    since = time.time()
    for path in (args.out, args.results, args.cache):
        path.mkdir(parents=True, exist_ok=True)
    env = child_env(args)
    os.environ["DCROBENCH_CACHE"] = env["DCROBENCH_CACHE"]  # for the grid status read in this process
    if args.data_root.resolve() != (args.cache / "data").resolve():
        print(f"warning: `dcrobench sweep` reads datasets from {args.cache / 'data'} only, not {args.data_root}",
              file=sys.stderr)
    parts: list[Part] = []

    def done(part: Part) -> None:  # summary.md after every part: a session killed early still says how far it got
        parts.append(part)
        print(f"{part.name}: {part.status} ({part.seconds:.1f} s)", file=sys.stderr, flush=True)
        write_summary(args.out, parts, clock, args, [], [], [])

    env_part, info = record_environment(args, env)
    done(env_part)
    if "error" in info:  # nothing else can run
        return parts
    done(guarded("MNIST import", import_mnist, args, env))
    done(guarded("CUDA tests", run_cuda_tests, args, env, bool(info.get("cuda_available")), clock))
    done(guarded("timed cell", time_cell, args, env, clock))
    dm_pending = any(not dm_done(args, s) for s in args.dm_seeds)
    grid_s = split_budget(clock.left(), args.dm_share, bool(guarded_pending(args)), dm_pending)
    done(guarded("grid", run_grid, args, env, grid_s))
    done(guarded("DM", compress_dm, args, env, clock))
    done(guarded("copy to --out", copy_results, args, since, [c for p in parts for c in p.checkpoints],
                 [c for p in parts for c in p.finished]))
    if args.pack:
        bundled, left_out = bundle_plan(args.out)
        names = pack(args.out, bundled)
        write_summary(args.out, parts, clock, args, bundled, left_out, names)
    return parts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.restore is not None:
        restore(args.restore, args)
        return 0
    parts = session(args)
    return 1 if parts[0].status.startswith("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
