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

from typing import Any

from dcrobench.protocol import SHARED_BLOCKS
from dcrobench.recordcheck import method_blocks
from record_migration import migrate


def rehash(rec: dict[str, Any], current: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    ref, method = rec["protocol"], rec["method"]["name"]
    proto = current.get(ref["name"])
    if proto is None or proto.version != ref["version"]:
        return "kept: protocol version no longer built in", None
    blocks = method_blocks(method)
    if proto.hash_for(method, SHARED_BLOCKS) != ref["hash"]:
        return "kept: recorded hash is not the old rule's for today's protocol", None
    new = proto.hash_for(method, blocks)
    if new == ref["hash"]:
        return "kept: the method takes the shared blocks", None
    return "moved", {**rec, "protocol": {**ref, "hash": new}}


if __name__ == "__main__":
    migrate(__doc__.split("\n\n")[0], rehash, remove_old=True)
