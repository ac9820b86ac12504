"""Result records: one JSON file per (protocol, method, dataset, budget, model, norm, seed).

Files are written atomically under a name derived from the cell key and the protocol hash, so
two writers never collide, re-running finds what is done, and a record made under a different
protocol hash is never overwritten.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DcrobenchError
from .fileio import atomic_write_json

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CellKey:
    protocol: str
    protocol_version: int
    protocol_hash: str
    method: str
    dataset: str
    budget: int | None  # None = no budget (the full set)
    model: str
    norm: str
    seed: int

    def relpath(self) -> Path:
        b = "full" if self.budget is None else f"b{self.budget}"
        name = f"{_safe(self.method)}_{self.dataset}_{b}_{self.model}_{self.norm}_s{self.seed}_{self.protocol_hash}.json"
        return Path(f"{_safe(self.protocol)}-v{self.protocol_version}") / self.dataset / _safe(self.method) / name


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def record_path(results_dir: Path, key: CellKey) -> Path:
    return Path(results_dir) / key.relpath()


def write_record(results_dir: Path, key: CellKey, record: dict[str, Any]) -> Path:
    path = record_path(results_dir, key)
    if path.exists():
        raise DcrobenchError(f"refusing to overwrite existing record {path}")
    atomic_write_json(path, record)
    return path


def record_paths(results_dir: Path) -> list[Path]:
    """Record files under ``results_dir`` (stage-cache folders, named with a leading ``_``, excluded)."""
    root = Path(results_dir)
    return sorted(p for p in root.rglob("*.json") if not any(part.startswith("_") for part in p.relative_to(root).parts))


def load_records(results_dir: Path) -> list[dict[str, Any]]:
    """Every record under ``results_dir``; unreadable files raise with their path."""
    out = []
    for path in record_paths(results_dir):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DcrobenchError(f"cannot read result record {path}: {exc}") from None
        if isinstance(rec, dict) and rec.get("schema_version") is not None:
            rec["_path"] = str(path)
            out.append(rec)
    return out
