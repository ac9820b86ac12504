"""Where cached intermediate results live (proxy models, MCS solutions, synthetic sets).

``DCROBENCH_CACHE`` overrides the default ``~/.cache/dcrobench``. Cache entries are keyed by a
content hash of everything that determines them, so a stale entry can never be picked up.
"""

from __future__ import annotations

import hashlib
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
    """One warning for a cache entry that cannot be read; the caller recomputes and replaces it."""
    from .errors import one_line

    logging.getLogger("dcrobench").warning("cache entry %s is unreadable (%s); recomputing it", path, one_line(exc))
