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


def set_threads(n: int | None) -> None:
    """Pin torch's intra-op thread count (oversubscribed cores slow small models by 100x)."""
    if n is None:
        return
    check_threads(n)
    torch.set_num_threads(n)


def check_threads(n: int | None) -> None:
    """A thread count is at least 1 (``None``: torch's choice)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise DcrobenchError("--threads must be at least 1")
