"""Where cached intermediate results live (proxy models, MCS solutions, synthetic sets, parsed datasets).

``DCROBENCH_CACHE`` overrides the default ``~/.cache/dcrobench``. Cache entries are keyed by a
content hash of everything that determines them, so a stale entry can never be picked up, and each
is sealed when written: a small ``<file>.seal`` beside it names the key it answers and the sha256 of
its bytes. An entry is used only when its seal matches both (:func:`read_entry`), so a file copied
from another key, edited, replaced or cut short is reported and recomputed, never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    return Path(os.environ.get("DCROBENCH_CACHE") or Path.home() / ".cache" / "dcrobench")


def cache_dir(kind: str) -> Path:
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def content_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (dict key order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def report_damaged(path: Path, exc: BaseException) -> None:
    """One warning for a cache entry that cannot be used; the caller recomputes and replaces it."""
    from .errors import one_line

    logging.getLogger("dcrobench").warning("cache entry %s cannot be used (%s); recomputing it", path, one_line(exc))


class EntryMismatch(ValueError):
    """A cache entry that does not hold what its key says (or cannot show it)."""


def seal_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".seal")


def write_entry(path: Path, key: str, data: bytes) -> None:
    """Write a cache entry's bytes, then its seal (last: an entry without one is unfinished)."""
    from .fileio import atomic_write_bytes, atomic_write_json

    atomic_write_bytes(path, data)
    atomic_write_json(seal_path(path), {"key": key, "sha256": hashlib.sha256(data).hexdigest()})


def read_entry(path: Path, key: str) -> bytes:
    """A cache entry's bytes, read once and checked against its seal: EntryMismatch when the seal is
    missing, names another key, or the bytes changed since they were written (OSError: unreadable)."""
    data = Path(path).read_bytes()
    try:
        seal = json.loads(seal_path(path).read_text())
    except FileNotFoundError:
        raise EntryMismatch("it has no seal (unfinished, or written before entries were sealed)") from None
    except ValueError:
        raise EntryMismatch("its seal is not JSON") from None
    if not isinstance(seal, dict) or seal.get("key") != key:
        found = seal.get("key") if isinstance(seal, dict) else None
        raise EntryMismatch(f"it was written for key {found!r}, not {key!r}")
    if seal.get("sha256") != hashlib.sha256(data).hexdigest():
        raise EntryMismatch("its bytes changed after it was written")
    return data


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` of ``obj`` as bytes (for :func:`write_entry`)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def torch_entry(path: Path, key: str, map_location: Any = "cpu") -> Any:
    """A sealed torch cache entry, loaded safely (``weights_only=True``) after its seal is checked."""
    import torch

    return torch.load(io.BytesIO(read_entry(path, key)), map_location=map_location, weights_only=True)


def json_entry(path: Path, key: str) -> Any:
    """A sealed JSON cache entry, parsed after its seal is checked."""
    return json.loads(read_entry(path, key))

