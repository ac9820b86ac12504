"""Digest of the quick protocol's records for random, herding and mcs on digits, for refactorings.

Runs the three methods (all seeds, linf) into a fresh results folder with a fresh cache, drops
the fields that may differ between identical runs (times, dates, costs, environment, paths) and
writes the rest as canonical JSON; ``--compare FILE`` exits 1 and names the first difference when
the records moved.

    python benchmarks/checks/records_digest.py --out before.json        # on the old code
    python benchmarks/checks/records_digest.py --compare before.json    # on the new code
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

VOLATILE = ("cost", "env", "created_at", "_path", "dcrobench_version")
METHODS = ("random", "herding", "mcs")


def digest(threads: int) -> dict[str, dict]:
    work = Path(tempfile.mkdtemp(prefix="dcrobench-digest-"))
    os.environ["DCROBENCH_CACHE"] = str(work / "cache")
    from click.testing import CliRunner

    from dcrobench.cli import main
    from dcrobench.results import load_records

    for method in METHODS:
        res = CliRunner().invoke(main, ["run", "-m", method, "-d", "digits", "-p", "quick", "--threads", str(threads),
                                        "--no-progress", "--results", str(work / "results")])
        if res.exit_code != 0:
            sys.exit(f"{method} failed: {res.output}")
    out = {}
    for rec in load_records(work / "results"):
        key = f"{rec['method']['name']}/b{rec['budget']['ipc']}/{rec['norm']}/s{rec['seed']}"
        rec = {k: v for k, v in rec.items() if k not in VOLATILE}
        for part in ("compression",):  # solver timings inside MCS's per-class diagnostics
            for entry in rec.get(part, {}).get("mcs_per_class", []):
                entry.pop("seconds", None)
                entry.pop("cache_hit", None)
        out[key] = rec
    return out


def first_difference(a, b, where="") -> str | None:
    if type(a) is not type(b):
        return f"{where}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}/{k}: only in {'after' if k not in a else 'before'}"
            found = first_difference(a[k], b[k], f"{where}/{k}")
            if found:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: lengths {len(a)} != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := first_difference(x, y, f"{where}[{i}]"))), None)
    return None if a == b else f"{where}: {a!r} != {b!r}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--compare")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    records = digest(args.threads)
    if args.out:
        Path(args.out).write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(records)} records to {args.out}")
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        diff = first_difference(before, records)
        if diff:
            sys.exit(f"records moved: {diff}")
        print(f"{len(records)} records identical to {args.compare} (ignoring {', '.join(VOLATILE)})")


if __name__ == "__main__":
    main()
