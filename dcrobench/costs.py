"""What each stage cost: its own seconds, and the share of work cached between methods.

A proxy model trained once and reused by several coreset methods is *shared* work: the method
that trains it spends the seconds, the next one loads it in milliseconds. So a record's
``compress_s`` does not depend on which method ran first, shared work reports its original cost
to every method that used it (``proxy_s``), wherever it was computed.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class StageCost:
    """Seconds a stage took when it was computed, and whether this run loaded it instead."""

    seconds: float
    cached: bool


@dataclass
class SharedWork:
    original_s: float = 0.0  # what the shared pieces cost when they were computed
    spent_s: float = 0.0  # what getting them (training or loading) cost in this call


_ledger: contextvars.ContextVar[SharedWork | None] = contextvars.ContextVar("dcrobench_shared_work", default=None)


@contextmanager
def shared_work() -> Iterator[SharedWork]:
    """Collect the shared work done (or loaded) inside the block."""
    work = SharedWork()
    token = _ledger.set(work)
    try:
        yield work
    finally:
        _ledger.reset(token)


def note_shared(original_s: float, started: float) -> None:
    """Report one piece of shared work: its original cost and when getting it started (perf_counter)."""
    work = _ledger.get()
    if work is not None:
        work.original_s += float(original_s)
        work.spent_s += time.perf_counter() - started
