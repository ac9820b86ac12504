"""Record validation (published JSON schema) and the leaderboard consistency check."""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_FILE = "record-v1.json"


@cache
def record_schema() -> dict[str, Any]:
    return json.loads((resources.files("dcrobench") / "schema" / SCHEMA_FILE).read_text())


def record_errors(record: dict[str, Any]) -> list[str]:
    """Schema violations of one record, as readable strings (empty when valid)."""
    import jsonschema

    clean = {k: v for k, v in record.items() if not k.startswith("_")}
    validator = jsonschema.Draft202012Validator(record_schema(), format_checker=jsonschema.FormatChecker())
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(record)'}: {e.message}" for e in validator.iter_errors(clean)]
    if not errors:
        counts = clean["budget"]["per_class_counts"]
        if sum(counts) != clean["budget"]["total"]:
            errors.append("budget: per_class_counts do not add up to total")
        for part in ("standard", "adversarial"):
            ev = clean[part]
            if ev["robust_acc"] > min([ev["clean_acc"], *ev["attacks"].values()]) + 1e-12:
                errors.append(f"{part}: robust_acc is not the worst case of clean and every attack")
    return errors


def cell_of(record: dict[str, Any]) -> tuple:
    return (record["protocol"]["name"], record["protocol"]["version"], record["method"]["name"], record["dataset"],
            record["budget"]["ipc"], record["model"], record["norm"], record["seed"])


def check_records(records: list[dict[str, Any]]) -> list[str]:
    """Invalid records and cells claimed by records with different protocol hashes."""
    problems = []
    hashes: dict[tuple, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        where = rec.get("_path", "?")
        errs = record_errors(rec)
        if errs:
            problems += [f"{where}: {e}" for e in errs]
            continue
        hashes[cell_of(rec)][rec["protocol"]["hash"]].append(where)
    for cell, by_hash in hashes.items():
        if len(by_hash) > 1:
            detail = "; ".join(f"{h}: {', '.join(Path(p).name for p in paths)}" for h, paths in sorted(by_hash.items()))
            problems.append(f"cell {cell} is claimed by records with different protocol hashes ({detail}): "
                            "bump the protocol version or remove the stale records")
    return problems
