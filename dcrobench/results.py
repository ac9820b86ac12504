"""Result records: one JSON file per (protocol, method, dataset, budget, model, norm, seed).

Files are written atomically under a name derived from the cell key and the protocol hash, so
two writers never collide, re-running finds what is done, and a record made under a different
protocol hash is never overwritten.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DcrobenchError, not_utf8
from .fileio import atomic_write_new, json_bytes

SCHEMA_VERSION = 3


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
    def of_record(cls, record: Record | dict[str, Any]) -> CellKey:
        """The cell a record measures: the one definition every writer, reader and check uses."""
        if isinstance(record, Record):
            return record.key
        p = record["protocol"]
        return cls(p["name"], p["version"], p["hash"], record["method"]["name"], record["dataset"],
                   record["budget"]["ipc"], record["model"], record["norm"], record["seed"])

    def relpath(self) -> Path:
        b = "full" if self.budget is None else f"b{self.budget}"
        name = f"{safe_name(self.method)}_{self.dataset}_{b}_{self.model}_{self.norm}_s{self.seed}_{self.protocol_hash}.json"
        return Path(f"{safe_name(self.protocol)}-v{self.protocol_version}") / self.dataset / safe_name(self.method) / name


class _JsonObject:
    """A record part as a frozen dataclass: optional fields None when the JSON object lacks them (older
    schema versions), keys it does not know kept in ``extra``, so ``from_json(d).to_json() == d``."""

    extra: dict[str, Any]

    @classmethod
    def from_json(cls, d: dict[str, Any]):
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: _typed(cls, k, d[k]) for k in names if k in d},
                   extra={k: v for k, v in d.items() if k not in names})

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            optional = f.default is None  # required fields are written even when null (a budget of None)
            if f.name != "extra" and not (optional and value is None):
                out[f.name] = value.to_json() if isinstance(value, _JsonObject) else value
        return {**out, **self.extra}


def _typed(cls: type, name: str, value: Any) -> Any:
    part = _PARTS.get((cls.__name__, name))
    return part.from_json(value) if part is not None and isinstance(value, dict) else value


@dataclass(frozen=True)
class ProtocolRef(_JsonObject):
    name: str
    version: int
    hash: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodRef(_JsonObject):
    name: str
    version: str
    kind: str
    params: dict[str, Any]
    #: the distribution whose plugin provided it ({distribution, version, plugin}; a string in schema 1)
    source: dict[str, str] | str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Budget(_JsonObject):
    ipc: int | None  # images per class; None = no budget (the full set)
    per_class_counts: list[int]
    total: int
    weighted: bool
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scores(_JsonObject):
    standard: float  # clean accuracy of the standard-trained model
    robust: float  # worst-case accuracy of the adversarially trained model
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation(_JsonObject):
    """One model under attack on the test points: accuracies, and per point whether it survived."""

    clean_acc: float
    robust_acc: float
    attacks: dict[str, float]  # accuracy after each attack (cascade: after it and every earlier one)
    n: int | None = None
    mode: str | None = None
    autoattack_acc: float | None = None
    flags: dict[str, str] | None = None  # schema 2: packed per-point flags, see :meth:`point_flags`
    test_fingerprint: str | None = None  # the test points the flags refer to, in order
    #: robust accuracy at other radii (``evaluation.eps_sweep``): [{"multiple", "eps", "robust_acc"}], by multiple
    eps_curve: list[dict[str, float]] | None = None
    #: median size of the smallest decision-changing perturbation, per minimal-perturbation attack
    minimal_perturbation: dict[str, float | None] | None = None
    #: ``evaluation.extra_attacks``: {"mode", "attacks", "flags", "minimal_perturbation", "in_score"}
    extra_attacks: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def point_flags(self, which: str = "robust") -> np.ndarray | None:
        """Per test point: ``clean`` correct, survived one attack, or ``robust`` (correct and survived every
        attack: the pointwise worst case); None for records without flags (schema 1)."""
        if not self.flags or self.n is None:
            return None
        if which == "robust":
            names = [k for k in self.flags if k != "encoding"]
            return np.logical_and.reduce([self.point_flags(k) for k in names])
        return decode_point_flags(self.flags[which], self.n)


@dataclass(frozen=True)
class Record(_JsonObject):
    """One measurement: a method's compressed set, the two models trained on it, and their scores.

    Built from a validated JSON record (:func:`dcrobench.validation.record_errors`) with ``from_json``;
    ``to_json`` gives the same JSON back. ``path`` is the file it was read from (not part of the JSON).
    """

    schema_version: int
    dcrobench_version: str
    protocol: ProtocolRef
    method: MethodRef
    dataset: str
    budget: Budget
    model: str
    norm: str
    eps: float
    seed: int
    scores: Scores
    standard: Evaluation  # the standard-trained model
    adversarial: Evaluation  # the adversarially trained model
    adversarial_training: dict[str, Any]
    cost: dict[str, Any]
    env: dict[str, Any]
    created_at: str
    compressed_set: dict[str, Any] | None = None  # schema 2: content hash of the training tensors
    compression: dict[str, Any] | None = None  # what the method reports about its set
    diagnostics: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any], path: str | None = None) -> Record:
        d = {k: v for k, v in d.items() if k != "_path"}
        return _replace_path(super().from_json(d), path)

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out.pop("path", None)
        return out

    @property
    def key(self) -> CellKey:
        p = self.protocol
        return CellKey(p.name, p.version, p.hash, self.method.name, self.dataset, self.budget.ipc, self.model,
                       self.norm, self.seed)


def _replace_path(record: Record, path: str | None) -> Record:
    object.__setattr__(record, "path", path)
    return record


_PARTS: dict[tuple[str, str], type[_JsonObject]] = {
    ("Record", "protocol"): ProtocolRef, ("Record", "method"): MethodRef, ("Record", "budget"): Budget,
    ("Record", "scores"): Scores, ("Record", "standard"): Evaluation, ("Record", "adversarial"): Evaluation,
}


def encode_point_flags(flags: np.ndarray) -> str:
    """Booleans packed 8 to a byte (numpy's bit order), base64: the records' ``packbits-base64``."""
    return base64.b64encode(np.packbits(np.asarray(flags, dtype=bool)).tobytes()).decode("ascii")


def decode_point_flags(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)


def safe_name(text: str) -> str:
    """``text`` as one part of a file name (letters, digits, ``.+-``)."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def record_path(results_dir: Path, key: CellKey) -> Path:
    return Path(results_dir) / key.relpath()


def write_record(results_dir: Path, record: Record) -> Path:
    """Create the record under the name of its cell; an existing file is never replaced, even one that another
    process created a moment ago (the file is published with a hard link, which fails when the name exists)."""
    path = record_path(results_dir, record.key)
    data = json_bytes(record.to_json())
    try:
        atomic_write_new(path, lambda fh: fh.write(data))
    except FileExistsError:
        raise DcrobenchError(f"refusing to overwrite existing record {path}") from None
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
        return None, not_utf8(exc)
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
