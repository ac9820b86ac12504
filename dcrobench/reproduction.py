"""The paper's published numbers beside ours: the leaderboard's "Reproducing the paper" section.

The numbers are data (``reference/chen-selvan-2024.yaml``: Table 1 and Table 3, every dataset), each
naming the protocol whose cells reproduce it; a cell not run yet shows as such, so a later run (a GPU
sweep of Table 1, say) fills its row without code changes. A row whose paper setting a CPU cannot run
may name a substitute protocol, and is then marked as not the paper's setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from .aggregate import Cell
from .stats import Estimate, estimate_text

REFERENCE = "chen-selvan-2024.yaml"
SCORES = ("standard", "linf", "l2")


@dataclass(frozen=True)
class PaperNumber:
    """One published mean ± std (in %), and where dcrobench's matching cell lives."""

    table: str
    dataset: str
    method: str
    budget: int | None  # None: the full training set (the paper's Raw)
    model: str
    score: str  # standard | linf | l2
    mean: float
    std: float
    repeats: int
    protocol: str
    substitute: str | None = None  # a protocol that stands in where a CPU cannot run the paper's setting
    note: str = ""


@dataclass(frozen=True)
class Reproduction:
    paper: PaperNumber
    ours: Estimate | None  # None: not run yet
    protocol: str  # the protocol (and version) the cell came from, or the one to run
    substitute: bool  # ours comes from the substitute protocol, not the paper's setting

    @property
    def delta(self) -> float | None:
        """Ours − paper, in points of %."""
        return None if self.ours is None else 100 * self.ours.mean - self.paper.mean

    @property
    def verdict(self) -> str:
        if self.ours is None:
            return "not run"
        e = self.ours
        if e.low is None:
            return "no interval"
        inside = 100 * e.low <= self.paper.mean <= 100 * e.high
        text = "paper inside our 95% CI" if inside else ("ours lower" if self.delta < 0 else "ours higher")
        return f"{text} (not the paper's setting)" if self.substitute else text


@lru_cache(maxsize=1)
def paper_numbers() -> tuple[PaperNumber, ...]:
    """Every published number of the reference file, validated (a typo fails loudly, not silently)."""
    raw = yaml.safe_load((resources.files("dcrobench") / "reference" / REFERENCE).read_text(encoding="utf-8"))
    return tuple(n for table in raw["tables"] for n in _table_numbers(table))


def _table_numbers(table: dict[str, Any]) -> list[PaperNumber]:
    out = []
    datasets, scores = table["datasets"], table["scores"]
    substitutes = table.get("substitutes") or {}
    if not set(scores) <= set(SCORES):
        raise ValueError(f"{table['id']}: unknown scores {sorted(set(scores) - set(SCORES))}")
    for method, per_score in table["rows"].items():
        if set(per_score) != set(scores):
            raise ValueError(f"{table['id']}.{method}: scores {sorted(per_score)}, expected {sorted(scores)}")
        sub = substitutes.get(method) or {}
        for score in scores:
            values = per_score[score]
            if len(values) != len(datasets):
                raise ValueError(f"{table['id']}.{method}.{score}: {len(values)} values for {len(datasets)} datasets")
            for dataset, (mean, std) in zip(datasets, values):
                out.append(PaperNumber(
                    table=table["title"], dataset=dataset, method=method,
                    budget=None if method == "full" else int(table["budget"]), model=table["model"], score=score,
                    mean=float(mean), std=float(std), repeats=int(table["repeats"]), protocol=table["protocol"],
                    substitute=sub.get("protocol"), note=sub.get("note", "")))
    return out


def _latest(cells_: list[Cell], protocol: str, n: PaperNumber) -> Cell | None:
    """The newest version's cell of ``protocol`` for the paper number's dataset, model, method and budget (the
    standard score from the l_inf cell, else any norm: the standard model does not depend on the norm)."""
    norms = ("linf", "l2") if n.score == "standard" else (n.score,)
    found = [c for c in cells_ if c.protocol == protocol and c.dataset == n.dataset and c.model == n.model
             and c.method == n.method and c.budget == n.budget and c.norm in norms]
    if not found:
        return None
    newest = max(c.version for c in found)
    return min((c for c in found if c.version == newest), key=lambda c: (norms.index(c.norm), -c.n))


def reproductions(cells_: list[Cell]) -> list[Reproduction]:
    """One row per published number: ours from the paper's protocol, else from its substitute, else not run."""
    rows = []
    for n in paper_numbers():
        cell, substitute = _latest(cells_, n.protocol, n), False
        if cell is None and n.substitute:
            cell = _latest(cells_, n.substitute, n)
            substitute = cell is not None
        score = "standard" if n.score == "standard" else "robust"
        where = f"{cell.protocol} v{cell.version}" if cell else n.protocol
        rows.append(Reproduction(n, cell.estimate(score) if cell else None, where, substitute))
    return rows


SCORE_TITLES = {"standard": "standard", "linf": "ℓ∞ robust", "l2": "ℓ2 robust"}
HEADERS = ("dataset", "method", "budget", "score", "paper", "ours", "Δ", "verdict")


def table_rows(rows: list[Reproduction]) -> list[tuple[str, ...]]:
    """The section's cells as text, one tuple per published number (markdown and web page alike)."""
    out = []
    for r in rows:
        n = r.paper
        verdict = r.verdict + (f": {n.note}" if r.substitute and n.note else "")
        out.append((n.dataset, n.method, "full" if n.budget is None else str(n.budget), SCORE_TITLES[n.score],
                    f"{n.mean:.2f} ± {n.std:.2f} n={n.repeats}", "–" if r.ours is None else estimate_text(r.ours),
                    "–" if r.delta is None else f"{r.delta:+.2f}", verdict))
    return out


@dataclass(frozen=True)
class TableSummary:
    title: str
    protocol: str
    rows: list[tuple[str, ...]]
    run: int  # published numbers with a cell of ours
    inside: int  # ... whose paper mean lies inside our interval

    def summary(self, code: str = "`") -> str:
        """One line on how much of the table has run (``code``: the quote around the protocol name)."""
        return (f"Protocol {code}{self.protocol}{code}: {self.run} of {len(self.rows)} published numbers run, "
                f"{self.inside} inside our 95% interval.")


def tables(cells_: list[Cell]) -> list[TableSummary]:
    """Per paper table, in the reference file's order: its rows (dataset, method, score order) and counts."""
    by_table: dict[str, list[Reproduction]] = {}
    for r in reproductions(cells_):
        by_table.setdefault(r.paper.table, []).append(r)
    out = []
    for title, rows in by_table.items():
        datasets = list(dict.fromkeys(r.paper.dataset for r in rows))
        methods = list(dict.fromkeys(r.paper.method for r in rows))
        rows = sorted(rows, key=lambda r: (datasets.index(r.paper.dataset), methods.index(r.paper.method),
                                           SCORES.index(r.paper.score)))
        out.append(TableSummary(title, rows[0].paper.protocol, table_rows(rows), sum(r.ours is not None for r in rows),
                                sum(r.verdict == "paper inside our 95% CI" for r in rows)))
    return out


INTRO = ("The paper's published mean ± std beside ours (mean ± sample std [95% CI] n=seeds, as in the leaderboard's"
         " tables); Δ = ours − paper in points of %; the verdict says whether the paper's mean lies inside our "
         "interval. Our robust score is AutoAttack's (APGD-CE + APGD-DLR, then PGD). A table none of whose cells "
         "has run yet is summarised in one line; a verdict ending (not the paper's setting) comes from a protocol a"
         " CPU can run instead.")


def markdown_lines(cells_: list[Cell], level: str = "##") -> list[str]:
    """The "Reproducing the paper" section of the published leaderboard."""
    from tabulate import tabulate

    out = [f"{level} Reproducing the paper", "", INTRO, ""]
    for t in tables(cells_):
        out += [f"{level}# {t.title}", "", t.summary(), ""]
        if t.run:
            out += [tabulate(t.rows, headers=HEADERS, tablefmt="github", disable_numparse=True), ""]
    return out
