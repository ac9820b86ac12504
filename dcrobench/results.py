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

SCHEMA_VERSION = 2


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

    @classmethod
    def of_record(cls, record: dict[str, Any]) -> CellKey:
        """The cell a record measures: the one definition every writer, reader and check uses."""
        p = record["protocol"]
        return cls(p["name"], p["version"], p["hash"], record["method"]["name"], record["dataset"],
                   record["budget"]["ipc"], record["model"], record["norm"], record["seed"])

    def relpath(self) -> Path:
        b = "full" if self.budget is None else f"b{self.budget}"
        name = f"{safe_name(self.method)}_{self.dataset}_{b}_{self.model}_{self.norm}_s{self.seed}_{self.protocol_hash}.json"
        return Path(f"{safe_name(self.protocol)}-v{self.protocol_version}") / self.dataset / safe_name(self.method) / name


def safe_name(text: str) -> str:
    """``text`` as one part of a file name (letters, digits, ``.+-``)."""
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
    return sorted(p for p in root.rglob("*.json")
                  if p.is_file() and not any(part.startswith("_") for part in p.relative_to(root).parts))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def read_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) for a readable record file, else (None, one-line reason): unreadable, not UTF-8,
    not JSON (NaN and Infinity included), or not a JSON object."""
    try:
        rec = json.loads(Path(path).read_bytes().decode("utf-8"), parse_constant=_reject_constant)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start:exc.start + 1]!r})"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})"
    except (ValueError, RecursionError) as exc:
        return None, f"not valid JSON ({' '.join(str(exc).split()) or type(exc).__name__})"
    if not isinstance(rec, dict):
        return None, f"not a JSON object but a JSON {type(rec).__name__}"
    return rec, None


def load_records(results_dir: Path, errors: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Every record file under ``results_dir``, parsed, in path order, each tagged with its ``_path``.

    Nothing is dropped silently: a file that cannot be read, is not JSON or not a JSON object raises
    DcrobenchError naming it, or, when ``errors`` is given, is appended to it as (path, reason). Records are
    not validated here: one without schema_version is returned, for validation to reject with its reason.
    """
    out = []
    for path in record_paths(results_dir):
        rec, reason = read_record(path)
        if reason is not None:
            if errors is None:
                raise DcrobenchError(f"cannot read result record {path}: {reason}")
            errors.append((str(path), reason))
            continue
        rec["_path"] = str(path)
        out.append(rec)
    return out
