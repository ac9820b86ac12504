"""What every record migration here shares: read each record of a results folder, let the migration decide, and
write what it decided (each write printed, a tally at the end, ``--dry-run`` to only print)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from dcrobench.fileio import atomic_write_new, json_bytes
from dcrobench.protocol import builtin_protocol, builtin_protocols
from dcrobench.results import CellKey, read_record, record_path, record_paths

#: (record, today's built-in protocols by name) -> (what happened, the record to write or None)
Decide = Callable[[dict[str, Any], dict[str, Any]], tuple[str | None, dict[str, Any] | None]]


def migrate(description: str, decide: Decide, *, remove_old: bool) -> None:
    """Run a migration: ``remove_old`` moves each record it rewrites, else the old one stays (and a cell that
    already has a record at the new path is left alone)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("results", type=Path)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    current = {name: builtin_protocol(name) for name in builtin_protocols()}
    tally: Counter[str] = Counter()
    for path in record_paths(args.results):
        rec, reason = read_record(path)
        if reason is not None:
            raise SystemExit(f"{path}: {reason}")
        what, new = decide(rec, current)
        if new is None:
            if what:
                tally[what] += 1
            continue
        target = record_path(args.results, CellKey.of_record(new))
        if target.exists():
            tally["kept: the cell already has a record at the new path"] += 1
            continue
        print(f"{path} -> {target}")
        tally[what or "written"] += 1
        if not args.dry_run:
            atomic_write_new(target, lambda fh, data=json_bytes(new): fh.write(data))
            if remove_old:
                path.unlink()
    for what, n in sorted(tally.items()):
        print(f"{n:5d} {what}")
