"""The one aggregation behind every leaderboard view: records -> cells of seed-level scores.

A cell is (protocol, version, protocol hash, dataset, norm, model, method, budget): render, publish, the
plots and check all group records through :func:`cells`, so no view can mix protocol versions or hashes,
and all of them read only fields that every record schema version (1 and 2) has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .results import CellKey, Record
from .stats import Comparison, Estimate, bootstrap_estimate, compare_flags, unpaired

KIND_ORDER = {"baseline": 0, "selection": 1, "condensation": 2}


def identity(record: Record | dict[str, Any]) -> CellKey:
    """What makes a record one measurement: two files with the same identity are duplicates."""
    return CellKey.of_record(record)


def cell_key(record: Record | dict[str, Any]) -> tuple:
    """(protocol, version, hash, dataset, norm, model, method, budget): the identity without the seed."""
    k = identity(record)
    return (k.protocol, k.protocol_version, k.protocol_hash, k.dataset, k.norm, k.model, k.method, k.budget)


@dataclass
class Cell:
    protocol: str
    version: int
    hash: str
    dataset: str
    norm: str
    model: str
    method: str
    budget: int | None  # None = the full set
    kind: str = ""
    eps: float = 0.0
    seeds: list[int] = field(default_factory=list)
    standard: list[float] = field(default_factory=list)
    robust: list[float] = field(default_factory=list)
    #: per seed: the number of test points, their fingerprint, and per point whether the standard model was
    #: correct / the adversarial model robust (None where a record does not say: schema 1)
    points: list[int | None] = field(default_factory=list)
    test_points: list[str | None] = field(default_factory=list)
    standard_flags: list[np.ndarray | None] = field(default_factory=list)
    robust_flags: list[np.ndarray | None] = field(default_factory=list)
    #: per seed: compression + training seconds (nan where a record does not say)
    cost_s: list[float] = field(default_factory=list)
    #: per seed: the adversarially trained model's robust accuracy by multiple of eps (evaluation.eps_sweep)
    eps_curves: list[dict[float, float] | None] = field(default_factory=list)
    #: per seed: the adversarially trained model's accuracy under each extra attack on its own
    #: (``evaluation.extra_attacks``) and each minimal-perturbation attack's median size
    extra_attacks: list[dict[str, float] | None] = field(default_factory=list)
    minimal_perturbation: list[dict[str, float | None] | None] = field(default_factory=list)
    #: per seed: the older protocol version the record was carried from (``protocol.carried_from``), else None
    carried_from: list[int | None] = field(default_factory=list)

    def attack_means(self) -> dict[str, float]:
        """Mean accuracy over the seeds under each extra attack every seed was attacked with."""
        return _mean_over_seeds(self.extra_attacks, self.n)

    def median_perturbation(self, name: str) -> float | None:
        """Mean over the seeds of an attack's median minimal perturbation (None if a seed found none)."""
        return _mean_over_seeds(self.minimal_perturbation, self.n).get(name)

    def eps_curve(self) -> dict[float, float]:
        """Mean robust accuracy over the seeds by multiple of eps, for the multiples every seed has."""
        return _mean_over_seeds(self.eps_curves, self.n)

    @property
    def n(self) -> int:
        return len(self.seeds)

    def estimate(self, score: str) -> Estimate:
        """Mean, sample std and 95% interval (over seeds and test points) of the ``standard`` or ``robust`` score."""
        return bootstrap_estimate(getattr(self, score), self.points)

    @property
    def comparable(self) -> tuple:
        """What a method's cell and Random's must share to be compared (hashes differ per method)."""
        return (self.protocol, self.version, self.dataset, self.model, self.norm, self.budget)


def _mean_over_seeds(per_seed: list[dict | None], seeds: int) -> dict:
    """Per key, the mean over the seeds of the per-seed values, for the keys every one of the ``seeds`` seeds
    has a value (not None) for, in key order; {} when a seed has none."""
    runs = [d for d in per_seed if d]
    if not runs or len(runs) != seeds:
        return {}
    common = set.intersection(*({k for k, v in d.items() if v is not None} for d in runs))
    return {k: sum(d[k] for d in runs) / len(runs) for k in sorted(common)}


def cells(records: Iterable[Record | dict[str, Any]]) -> list[Cell]:
    """Seed-level scores grouped by :func:`cell_key`, each record :func:`identity` counted once (the first), in
    :func:`_order`. Records must be valid (:mod:`dcrobench.validation`; a valid JSON record is taken as a
    :class:`Record`); only fields every schema version has are read."""
    out: dict[tuple, Cell] = {}
    seen: set[CellKey] = set()
    for r in records:
        r = r if isinstance(r, Record) else Record.from_json(r)
        if r.key in seen:
            continue
        seen.add(r.key)
        key = cell_key(r)
        cell = out.get(key)
        if cell is None:
            cell = out[key] = Cell(*key, kind=r.method.kind, eps=r.eps)
        cell.seeds.append(r.seed)
        cell.standard.append(r.scores.standard)
        cell.robust.append(r.scores.robust)
        cell.points.append(r.adversarial.n)
        cell.test_points.append(r.adversarial.test_fingerprint
                                if r.adversarial.test_fingerprint == r.standard.test_fingerprint else None)
        cell.standard_flags.append(r.standard.point_flags("clean"))
        cell.robust_flags.append(r.adversarial.point_flags("robust"))
        cell.cost_s.append(_cost_s(r.cost))
        curve = r.adversarial.eps_curve
        cell.eps_curves.append({float(p["multiple"]): float(p["robust_acc"]) for p in curve} if curve else None)
        extra = r.adversarial.extra_attacks or {}
        cell.extra_attacks.append(dict(extra["attacks"]) if extra else None)
        cell.minimal_perturbation.append(dict(extra.get("minimal_perturbation") or {}) if extra else None)
        carried = r.protocol.extra.get("carried_from")
        cell.carried_from.append(carried.get("version") if isinstance(carried, dict) else None)
    return sorted(out.values(), key=_order)


def _cost_s(cost: dict[str, Any]) -> float:
    parts = [cost.get("compress_s"), cost.get("train_s")]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in parts):
        return float("nan")
    return float(sum(parts))


def versus_random(cells_: Iterable[Cell], random: str = "random") -> dict[int, dict[str, Comparison]]:
    """``id(cell)`` -> {"standard": ..., "robust": ...} comparisons with Random's cell of the same
    :attr:`Cell.comparable` (exactly one Random cell there; Random itself and budget-free cells are left out),
    paired seed by seed on the same test points (same seed, same test fingerprint, flags recorded); where no
    seed pairs, the difference of the cells' means with verdict "n/a"."""
    cells_ = list(cells_)
    randoms: dict[tuple, list[Cell]] = {}
    for c in cells_:
        if c.method == random:
            randoms.setdefault(c.comparable, []).append(c)
    out = {}
    for c in cells_:
        found = randoms.get(c.comparable, [])
        if c.method == random or c.budget is None or len(found) != 1:
            continue
        out[id(c)] = {score: _compare(c, found[0], score) for score in ("standard", "robust")}
    return out


def _compare(c: Cell, r: Cell, score: str) -> Comparison:
    mine, theirs = _paired_flags(c, r, score)
    return compare_flags(mine, theirs) if mine else unpaired(getattr(c, score), getattr(r, score))


def _paired_flags(c: Cell, r: Cell, score: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The flags of ``c`` and ``r`` for the seeds both measured on the same test points."""
    mine, theirs = [], []
    for i, seed in enumerate(c.seeds):
        j = r.seeds.index(seed) if seed in r.seeds else None
        if j is None or c.test_points[i] is None or c.test_points[i] != r.test_points[j]:
            continue
        a, b = getattr(c, f"{score}_flags")[i], getattr(r, f"{score}_flags")[j]
        if a is not None and b is not None:
            mine.append(a)
            theirs.append(b)
    return mine, theirs


def _order(c: Cell) -> tuple:
    """Protocol, version, dataset, norm, model, method, budget (the full set first), hash."""
    return (c.protocol, c.version, c.dataset, c.norm, c.model, c.method, c.budget is not None, c.budget or 0, c.hash)


def method_order(cells_: Iterable[Cell]) -> list[tuple[str, str, str]]:
    """(method, hash, kind) of the cells, baselines first, then coresets and condensation, by name."""
    rows = {(c.method, c.hash): c.kind for c in cells_}
    return sorted(((m, h, k) for (m, h), k in rows.items()), key=lambda r: (KIND_ORDER.get(r[2], 9), r[0], r[1]))


def method_labels(cells_: Iterable[Cell]) -> dict[tuple[str, str], str]:
    """(method, hash) -> row label: the method name, plus the hash where the method has several in ``cells_``."""
    cells_ = list(cells_)
    hashes: dict[str, set[str]] = {}
    for c in cells_:
        hashes.setdefault(c.method, set()).add(c.hash)
    return {(c.method, c.hash): c.method if len(hashes[c.method]) == 1 else f"{c.method} ({c.hash})" for c in cells_}
