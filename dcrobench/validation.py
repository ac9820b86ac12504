"""Record validation (the published JSON schema of the record's own schema_version, plus the facts a
schema cannot say) and the record-level leaderboard check: invalid records, duplicates, hash conflicts."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .aggregate import cell_key, identity
from .errors import one_line_text
from .results import SCHEMA_VERSION, Record, load_records

SCHEMA_VERSIONS = tuple(range(1, SCHEMA_VERSION + 1))
TOLERANCE = 1e-12
#: evaluation fields that schema 2 introduced (aggregation reads them, so a v1 record must not smuggle them in)
SCHEMA_2_EVALUATION_KEYS = ("flags", "eps_curve", "extra_attacks")


def schema_file(version: int) -> str:
    return f"record-v{version}.json"


@cache
def record_schema(version: int = SCHEMA_VERSION) -> dict[str, Any]:
    return json.loads((resources.files("dcrobench") / "schema" / schema_file(version)).read_text())


@cache
def _validator(version: int):
    import jsonschema

    return jsonschema.Draft202012Validator(record_schema(version), format_checker=jsonschema.FormatChecker())


def record_errors(record: Any) -> list[str]:
    """Why a record is invalid, as readable one-line strings (empty when valid).

    The schema is chosen by the record's ``schema_version``; a missing or unknown version is an error."""
    if not isinstance(record, dict):
        return [f"(record): not a JSON object but {type(record).__name__}"]
    clean = {k: v for k, v in record.items() if not k.startswith("_")}
    version = clean.get("schema_version")
    if "schema_version" not in clean:
        return [f"schema_version: missing (known: {', '.join(map(str, SCHEMA_VERSIONS))})"]
    if type(version) is not int or version not in SCHEMA_VERSIONS:
        return [one_line_text(f"schema_version: unknown schema_version {json.dumps(version)} "
                          f"(known: {', '.join(map(str, SCHEMA_VERSIONS))})")]
    errors = _schema_errors(_validator(version).iter_errors(clean))
    errors += [f"{where}: {value} is not a finite number" for where, value in _non_finite(clean)]
    return errors or _consistency_errors(clean)


def _schema_errors(found) -> list[str]:
    """jsonschema's errors as lines; the missing properties of one object in one line."""
    lines, missing = [], {}
    for e in found:
        where = "/".join(map(str, e.absolute_path)) or "(record)"
        if e.validator == "required" and isinstance(e.instance, dict):
            missing.setdefault(where, [r for r in e.validator_value if r not in e.instance])
            continue
        lines.append(one_line_text(f"{where}: {e.message}"))
    return [one_line_text(f"{where}: missing required {', '.join(names)}") for where, names in missing.items()] + lines


def _non_finite(obj: Any, where: str = "") -> list[tuple[str, float]]:
    """NaN and infinities anywhere (JSON has none, Python's json writes them; the schema's bounds miss NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return [(where or "(record)", obj)]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    return [bad for k, v in items for bad in _non_finite(v, f"{where}/{k}" if where else str(k))]


def _consistency_errors(rec: dict[str, Any]) -> list[str]:
    """What the schema cannot say: counts within the budget, scores that are the evaluations' numbers."""
    errors = []
    budget = rec["budget"]
    counts, ipc = budget["per_class_counts"], budget["ipc"]
    if sum(counts) != budget["total"]:
        errors.append(f"budget: per_class_counts add up to {sum(counts)}, not total {budget['total']}")
    if ipc is not None and max(counts) > ipc:
        over = [f"class {c}: {n}" for c, n in enumerate(counts) if n > ipc]
        errors.append(f"budget: per_class_counts exceed the budget of {ipc} per class "
                      f"({', '.join(over[:5])}{', ...' if len(over) > 5 else ''}; {sum(counts)} images in all)")
    for part in ("standard", "adversarial"):
        ev = rec[part]
        if ev["robust_acc"] > min([ev["clean_acc"], *ev["attacks"].values()]) + TOLERANCE:
            errors.append(f"{part}: robust_acc is not the worst case of clean and every attack")
    if rec["schema_version"] == 1:  # its schema leaves evaluations open: what only schema 2 defines is refused here
        errors += [f"{part}/{key}: schema_version 1 records carry no {key} (schema 2 defines it)"
                   for part in ("standard", "adversarial") for key in SCHEMA_2_EVALUATION_KEYS if key in rec[part]]
    if rec["schema_version"] >= 2:
        errors += [e for part in ("standard", "adversarial") for e in _flag_errors(part, rec[part])]
        errors += [e for part in ("standard", "adversarial") if rec[part].get("extra_attacks")
                   for e in _extra_attack_errors(part, rec[part])]
    if abs(rec["scores"]["standard"] - rec["standard"]["clean_acc"]) > TOLERANCE:
        errors.append("scores/standard: is not standard/clean_acc (the standard-trained model's clean accuracy)")
    if abs(rec["scores"]["robust"] - rec["adversarial"]["robust_acc"]) > TOLERANCE:
        errors.append("scores/robust: is not adversarial/robust_acc (the adversarially trained model's worst case)")
    return errors


def _flag_errors(part: str, ev: dict[str, Any], worst_case: bool = True) -> list[str]:
    """The per-point flags must give the accuracies they stand beside (and, with ``worst_case``, their
    pointwise worst case the robust accuracy)."""
    import binascii

    from .attacks import decode_flags

    flags, n = ev["flags"], ev["n"]
    names = {"clean", *ev["attacks"]}
    if set(flags) - {"encoding"} != names:
        return [f"{part}/flags: flags for {sorted(set(flags) - {'encoding'})}, accuracies for {sorted(names)}"]
    worst = None
    for name in sorted(names):
        try:
            bits = decode_flags(flags[name], n)
        except (binascii.Error, ValueError):
            return [f"{part}/flags/{name}: not base64 packed bits"]
        if len(flags[name]) != 4 * (((n + 7) // 8 + 2) // 3) or bits.numel() != n:
            return [f"{part}/flags/{name}: does not hold {n} flags"]
        acc = ev["clean_acc"] if name == "clean" else ev["attacks"][name]
        if abs(int(bits.sum()) / n - acc) > TOLERANCE:
            return [f"{part}/flags/{name}: the flags give accuracy {int(bits.sum()) / n:.4f}, the record says {acc:.4f}"]
        worst = bits if worst is None else worst & bits
    if worst_case and abs(int(worst.sum()) / n - ev["robust_acc"]) > TOLERANCE:
        return [f"{part}: robust_acc is not the pointwise worst case of the flags"]
    return []


def _extra_attack_errors(part: str, ev: dict[str, Any]) -> list[str]:
    """Each extra attack's flags give its accuracy, no attack beats clean accuracy (independent mode), and a
    score that counts them is at most each of them."""
    extra = ev["extra_attacks"]
    for name, acc in extra["attacks"].items():
        if acc > ev["clean_acc"] + TOLERANCE:
            return [f"{part}/extra_attacks/{name}: accuracy {acc:.4f} above the clean accuracy"]
        if extra["in_score"] and ev["robust_acc"] > acc + TOLERANCE:
            return [f"{part}: robust_acc is not the worst case of the extra attacks it counts"]
    return _flag_errors(f"{part}/extra_attacks", {"flags": extra["flags"], "n": ev["n"], "clean_acc": ev["clean_acc"],
                                                  "attacks": extra["attacks"]}, worst_case=False)


@dataclass
class RecordCheck:
    """The records of a results folder, sorted into what the leaderboard counts and what it must not."""

    records: list[Record] = field(default_factory=list)  # valid, each identity once
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, path of the record it repeats)
    conflicts: list[str] = field(default_factory=list)  # cells claimed under several protocol hashes

    def invalid_lines(self) -> list[str]:
        return [f"{path}: {reason}" for path, reason in self.invalid]

    def duplicate_lines(self) -> list[str]:
        return [f"{path}: duplicate of {first} (same protocol, hash, method, dataset, budget, model, norm and seed)"
                for path, first in self.duplicates]

    def problems(self) -> list[str]:
        """Every reason the records cannot be the leaderboard, one line each."""
        return self.invalid_lines() + self.duplicate_lines() + self.conflicts


def check_records(records: list[Any], unreadable: list[tuple[str, str]] = ()) -> RecordCheck:
    """Validate loaded records (``unreadable``: files that did not even parse, as (path, reason))."""
    out = RecordCheck(invalid=list(unreadable))
    first: dict[tuple, str] = {}
    for rec in records:
        where = rec.get("_path", "?") if isinstance(rec, dict) else "?"
        errs = record_errors(rec)
        if errs:
            out.invalid.append((where, "; ".join(errs)))
            continue
        key = identity(rec)
        if key in first:
            out.duplicates.append((where, first[key]))
            continue
        first[key] = where
        out.records.append(Record.from_json(rec, where))
    out.invalid.sort()
    out.conflicts = hash_conflicts(out.records)
    return out


def hash_conflicts(records: list[Record]) -> list[str]:
    """Cells (everything but hash and seed equal) claimed by records made under different protocol hashes."""
    by_cell: dict[tuple, dict[str, list[str]]] = {}
    for rec in records:
        name, version, hash_, dataset, norm, model, method, budget = cell_key(rec)
        cell = (name, version, dataset, norm, model, method, budget)
        by_cell.setdefault(cell, {}).setdefault(hash_, []).append(rec.path or "?")
    problems = []
    for (name, version, dataset, norm, model, method, budget), by_hash in sorted(by_cell.items(), key=lambda kv: str(kv[0])):
        if len(by_hash) > 1:
            detail = "; ".join(f"{h}: {', '.join(sorted(Path(p).name for p in paths))}" for h, paths in sorted(by_hash.items()))
            problems.append(f"cell {name} v{version} · {dataset} · {norm} · {model} · {method} · "
                            f"{'full' if budget is None else f'budget {budget}'} is claimed by records with different "
                            f"protocol hashes ({detail}): bump the protocol version or remove the stale records")
    return problems


def check_results(results_dir: Path) -> RecordCheck:
    """Load and check every record file under ``results_dir``; unreadable files are invalid, never raised."""
    unreadable: list[tuple[str, str]] = []
    records = load_records(results_dir, errors=unreadable)
    return check_records(records, unreadable)
