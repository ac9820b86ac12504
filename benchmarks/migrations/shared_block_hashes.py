"""One-off migration (2026-12-05, issue 33): records' protocol hashes leave out the shared blocks their method
does not take.

Before, ``Protocol.hash_for(method)`` hashed the ``proxy:`` block for every method, so tuning the proxy orphaned
the records of methods that never train one (random, full, dm, mcs, ...). Now the block counts only for the
methods naming it in ``protocol_blocks``. This script moves the committed records of the current built-in
protocol versions to their new hash: for each record it recomputes the hash the old rule gave and refuses to
touch the record unless that equals the recorded one (so only records whose protocol is exactly today's move),
then writes the record under its new name with only ``protocol.hash`` changed and removes the old file. Records
of protocol versions that are no longer built in keep their hash (nothing can re-run them).
Each move is printed; ``--dry-run`` only prints.

    python benchmarks/migrations/shared_block_hashes.py leaderboard/records [--dry-run]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from dcrobench.fileio import atomic_write_new, json_bytes
from dcrobench.protocol import SHARED_BLOCKS, builtin_protocol, builtin_protocols
from dcrobench.recordcheck import method_blocks
from dcrobench.results import CellKey, read_record, record_path, record_paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    current = {name: builtin_protocol(name) for name in builtin_protocols()}
    tally: Counter[str] = Counter()
    for path in record_paths(args.results):
        rec, reason = read_record(path)
        if reason is not None:
            raise SystemExit(f"{path}: {reason}")
        ref, method = rec["protocol"], rec["method"]["name"]
        proto = current.get(ref["name"])
        if proto is None or proto.version != ref["version"]:
            tally["kept: protocol version no longer built in"] += 1
            continue
        blocks = method_blocks(method)
        if proto.hash_for(method, SHARED_BLOCKS) != ref["hash"]:
            tally["kept: recorded hash is not the old rule's for today's protocol"] += 1
            continue
        new = proto.hash_for(method, blocks)
        if new == ref["hash"]:
            tally["kept: the method takes the shared blocks"] += 1
            continue
        rec["protocol"] = {**ref, "hash": new}
        target = record_path(args.results, CellKey.of_record(rec))
        print(f"{path} -> {target.name}")
        tally["moved"] += 1
        if not args.dry_run:
            atomic_write_new(target, lambda fh, data=json_bytes(rec): fh.write(data))
            path.unlink()
    for what, n in sorted(tally.items()):
        print(f"{n:5d} {what}")


if __name__ == "__main__":
    main()
