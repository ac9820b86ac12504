"""Worker-process lifecycle: workers never outlive the sweep, and a stop signal ends it cleanly.

Each local worker dies with its parent (``PR_SET_PDEATHSIG`` and a watchdog thread), and a
SIGTERM/SIGHUP to the parent stops the workers and ends the sweep with :class:`SweepInterrupted`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from .errors import Interrupted

#: signals that stop a sweep cleanly (workers stopped first); SIGINT raises KeyboardInterrupt as usual
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCHDOG_INTERVAL_S = 0.2


class SweepInterrupted(Interrupted):
    """The sweep got a stop signal; its workers were stopped. A re-run resumes."""

    def __init__(self, signum: int, message: str = "") -> None:
        self.signum = signum
        super().__init__(message or f"sweep stopped by {signal.Signals(signum).name}")


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:  # reparented: the parent is gone
            os._exit(1)
        time.sleep(WATCHDOG_INTERVAL_S)


def worker_init(parent_pid: int) -> None:
    """Initializer of every local worker process: never outlive ``parent_pid``.

    ``PR_SET_PDEATHSIG`` kills the worker as soon as the parent dies (even by SIGKILL), but it is
    tied to the parent *thread* that created the worker; the watchdog thread covers that case and
    non-Linux systems (within ``WATCHDOG_INTERVAL_S``).
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0))
        except Exception:  # no libc prctl: the watchdog still works
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="dcrobench-parent-watchdog", daemon=True).start()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into :class:`SweepInterrupted` in the main thread (elsewhere: no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SweepInterrupted(signum)

    previous = {}
    for sig in STOP_SIGNALS:
        try:
            previous[sig] = signal.signal(sig, handler)
        except (OSError, ValueError):
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_workers(pool) -> None:
    """Kill and reap every process of a ``ProcessPoolExecutor`` (none may go on alone)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.kill()
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join(timeout=5)
