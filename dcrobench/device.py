"""Device and thread selection."""

from __future__ import annotations

import torch

from .errors import DcrobenchError


def resolve_device(name: str | None = None) -> torch.device:
    """``None``/"auto" picks cuda when present, else cpu; anything else must be usable here."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DcrobenchError(f"unknown device '{name}': {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DcrobenchError(f"device '{name}' requested but CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DcrobenchError(f"device '{name}' requested but MPS is not available on this machine")
    return device


def set_threads(n: int | str | None, device: torch.device | str | None = None) -> int | None:
    """Pin torch's intra-op threads and the BLAS/OpenMP pools numpy and scipy use to ``n``; returns it.

    Oversubscribed cores slow small models by 100x, and numpy's OpenBLAS alike: a 500 x 500 solve took
    175 ms instead of 4 ms with the other core busy (GradMatch at 500 per class spends its time there).
    ``n``: a count, ``"auto"`` (:func:`auto_threads`) or ``None`` (leave the libraries' choice).
    """
    n = resolve_threads(n, device)
    if n is not None:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(n)
        threadpool_limits(limits=n)
    return n


def resolve_threads(n: int | str | None, device: torch.device | str | None = None) -> int | None:
    """A thread request as a count (``None`` stays None: torch's choice); refuses counts below 1."""
    if isinstance(n, str):
        if n.strip().lower() == "auto":
            return auto_threads(device)
        if n.strip().lower() == "torch":  # leave torch's own default
            return None
        try:
            n = int(n)
        except ValueError:
            raise DcrobenchError(f"--threads must be a number, 'auto' or 'torch', got {n!r}") from None
    check_threads(n)
    return n


def auto_threads(device: torch.device | str | None = None) -> int:
    """The default thread count, chosen from benchmarks/perf/threads.md: the cores this process may use
    that are not already busy (1-minute load average), at least 1; on 2 cores or fewer always 1: torch's
    default there was 20% faster idle but 2x slower with one core taken (the table's measurement)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, int(cores - busy + 0.5)) if cores > 2 else 1)


def check_threads(n: int | None) -> None:
    """A thread count is at least 1 (``None``: torch's choice)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise DcrobenchError("--threads must be at least 1")
