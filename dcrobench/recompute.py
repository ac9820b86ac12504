"""`leaderboard check --recompute N`: re-run sampled cells of a results folder with the current code, from an
empty stage cache and an empty dcrobench cache, and report every measured number that moved.

A leaderboard is trusted when its numbers come out of the code that claims them. Records whose protocol is not
the one their name, version and hash give now (an older version, a file not given) or whose set came from a file
cannot be re-run and are left out of the sample, with a note. The sample is drawn with a fixed seed from the
re-runnable records, cheapest first when ``cheapest`` is set (CI's few cheap cells). Compared: both scores, each
model's clean and robust accuracy, every attack's accuracy and per-point flags, the robustness curve, the extra
attacks' accuracies, and the compressed set's content hash. Each cell runs with the thread count its record was
made with (float reductions depend on it).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .results import Record
from .validation import TOLERANCE


@dataclass
class Recomputed:
    problems: list[str] = field(default_factory=list)  # "<path>: <field> moved ..." one per number
    notes: list[str] = field(default_factory=list)


def measured(rec: dict[str, Any]) -> dict[str, Any]:
    """The numbers a cell measures, by field path (what a re-run must give again)."""
    out: dict[str, Any] = {"scores/standard": rec["scores"]["standard"], "scores/robust": rec["scores"]["robust"],
                           "compressed_set/content_hash": (rec.get("compressed_set") or {}).get("content_hash")}
    for part in ("standard", "adversarial"):
        ev = rec[part]
        out[f"{part}/clean_acc"], out[f"{part}/robust_acc"] = ev["clean_acc"], ev["robust_acc"]
        for name, acc in ev["attacks"].items():
            out[f"{part}/attacks/{name}"] = acc
        for name, bits in (ev.get("flags") or {}).items():
            out[f"{part}/flags/{name}"] = bits
        for point in ev.get("eps_curve") or []:
            out[f"{part}/eps_curve/{point['multiple']}"] = point["robust_acc"]
        extra = ev.get("extra_attacks") or {}
        for name, acc in (extra.get("attacks") or {}).items():
            out[f"{part}/extra_attacks/{name}"] = acc
    return out


def moved(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``field: old -> new`` for every measured number that differs (floats beyond rounding)."""
    a, b = measured(old), measured(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        same = (math.isclose(x, y, rel_tol=1e-9, abs_tol=TOLERANCE) if isinstance(x, float) and isinstance(y, float)
                else x == y)
        if not same:
            lines.append(f"{key} moved: {_shown(x)} -> {_shown(y)}")
    return lines


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if value is None:
        return "absent"
    return value[:12] + "…" if isinstance(value, str) and len(value) > 12 else repr(value)


def sample(records: list[Record], n: int, seed: int, cheapest: bool = False, protocol_files: list[Any] = (),
           data_root: Path | None = None) -> tuple[list[tuple[Record, Any]], list[str]]:
    """Up to ``n`` re-runnable records with their protocol (built in, or one of ``protocol_files``), and notes on
    what could not be sampled."""
    from .recordcheck import Protocols
    from .registry import registries

    from .datafiles import dataset_state
    from .datasets import resolve_data_root

    regs, protocols = registries(), Protocols(protocol_files)
    states: dict[str, bool] = {}

    def available(name: str) -> bool:
        if name not in states:
            state = dataset_state(regs.datasets.get(name), resolve_data_root(data_root)).state
            states[name] = state in ("present", "embedded")
        return states[name]

    runnable, skipped = [], []
    for rec in records:
        proto, why = protocols.for_record(rec)
        if proto is not None and (rec.compressed_set or {}).get("from_file"):
            why = "its set came from a file"
        elif proto is not None and (rec.method.name not in regs.methods or rec.dataset not in regs.datasets):
            why = "its method or dataset is not registered here"
        elif proto is not None and not available(rec.dataset):
            why = f"dataset {rec.dataset}'s files are not in place (dcrobench data status)"
        if why is not None:
            skipped.append(why)
            continue
        runnable.append((rec, proto))
    runnable.sort(key=lambda item: item[0].path or "")
    if cheapest:
        runnable.sort(key=lambda item: sum(float(v) for k, v in item[0].cost.items()
                                           if k in ("compress_s", "train_s", "eval_s")))
        picked = runnable[:n]
    else:
        picked = random.Random(seed).sample(runnable, min(n, len(runnable)))
    notes = [f"{count} record(s) cannot be re-run: {why}" for why, count in sorted(Counter(skipped).items())]
    return picked, notes


def recompute(records: list[Record], n: int, *, seed: int = 0, cheapest: bool = False, data_root: Path | None = None,
              protocol_files: list[Any] = (), log: Callable[[str], None] = lambda line: None) -> Recomputed:
    """Re-run ``n`` sampled cells and compare (see the module docstring)."""
    import torch

    from .device import set_threads
    from .registry import registries
    from .runner import RunRequest, run

    from .datasets import resolve_data_root

    out = Recomputed()
    data_root = resolve_data_root(data_root)  # now: the default lives under the cache, which the re-runs replace
    picked, out.notes = sample(records, n, seed, cheapest, protocol_files, data_root)
    threads_before = torch.get_num_threads()
    for rec, proto in picked:
        where = rec.path or "?"
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="dcrobench-recompute-") as tmp, _cache(Path(tmp) / "cache"):
            set_threads(int(rec.env.get("threads") or 1))
            req = RunRequest(dataset=rec.dataset, protocol=proto, method=rec.method.name, budget=rec.budget.ipc,
                             model=rec.model, norms=(rec.norm,), seeds=(rec.seed,), data_root=data_root,
                             results_dir=Path(tmp) / "results")
            (new,) = run(req, registries(), log=log)
        lines = moved(rec.to_json(), new.to_json())
        out.problems += [f"{where}: {line} (re-run with the current code)" for line in lines]
        if not lines:
            out.notes.append(f"{where}: re-run with the current code, every number reproduced "
                             f"({time.perf_counter() - started:.0f} s)")
    set_threads(threads_before)
    return out


@contextlib.contextmanager
def _cache(folder: Path) -> Iterator[None]:
    """An empty dcrobench cache for the re-run: cached proxies or solutions must not stand in for the code."""
    before = os.environ.get("DCROBENCH_CACHE")
    os.environ["DCROBENCH_CACHE"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DCROBENCH_CACHE", None)
        else:
            os.environ["DCROBENCH_CACHE"] = before

