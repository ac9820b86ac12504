"""Carry records over a protocol version bump that did not change their method's settings (2026-12-05, issue 32).

`appendix-c-mnist` v4 changed MCS's training only (its weighted loss sums over the batch, as the authors' code
does). Every other method's settings are v3's, but the version is part of each record's protocol hash, so the
bump orphaned some 6 CPU-hours of full-MNIST cells whose numbers v4 would reproduce bit for bit (same stage
keys). For each record of an older version of a built-in protocol this script recomputes the hash today's
protocol gives the record's method *under the record's version number*; only if that equals the recorded hash
(the method's settings, every block it takes included, are exactly today's) does it write a new record of the
current version: the same numbers, `protocol.version` and `protocol.hash` the current ones, and
`protocol.carried_from` naming the version and hash it was measured under. The old record stays where it is
(records are never replaced); a cell that already has a current record is left alone. ``--dry-run`` prints.

    python benchmarks/migrations/carry_unchanged_cells.py leaderboard/records [--dry-run]
"""

from __future__ import annotations

from typing import Any

from dcrobench.recordcheck import method_blocks
from record_migration import migrate


def carry(rec: dict[str, Any], current: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    ref, method = rec["protocol"], rec["method"]["name"]
    proto = current.get(ref["name"])
    if proto is None or ref["version"] >= proto.version:
        return None, None
    blocks = method_blocks(method)
    if proto.hash_for(method, blocks, version=ref["version"]) != ref["hash"]:
        return f"kept: {ref['name']} v{ref['version']} settings differ from v{proto.version}'s", None
    return f"carried: {ref['name']} v{ref['version']} -> v{proto.version}", {
        **rec, "protocol": {"name": ref["name"], "version": proto.version, "hash": proto.hash_for(method, blocks),
                            "carried_from": {"version": ref["version"], "hash": ref["hash"]}}}


if __name__ == "__main__":
    migrate(__doc__.split("\n\n")[0], carry, remove_old=False)
