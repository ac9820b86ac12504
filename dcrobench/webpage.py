"""The leaderboard as one static web page (``index.html``): sortable, filterable tables per protocol version,
the plots, and each entry's provenance.

The page works offline from the file system: CSS and JS are inline, the plots are the PNG files beside it
(relative paths), and the data is one JSON document inside the page that the inline script turns into tables.
Rows are plain dicts and the page shows whatever keys they carry (:data:`COLUMNS` gives the order and format
of the known ones), so a view can add a column by adding a key.

A sort or filter can be given in the URL fragment or query, e.g. ``index.html#sort=robust_mean&dir=desc&norm=l2``;
the page applies it on load and keeps the fragment up to date as the reader sorts and filters.
"""

from __future__ import annotations

import html
import json
import math
from functools import cache
from importlib import resources
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .aggregate import KIND_ORDER, Cell, cell_key, cells, versus_random
from .reproduction import HEADERS as REPRODUCTION_HEADERS, INTRO, TableSummary, tables as reproduction_tables
from .results import Record
from .stats import MARKERS, Comparison

PAGE_FILE = "index.html"
DEFAULT_TITLE = "dcrobench leaderboard"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    #: text | int | num | pct (a fraction shown in %, 1 decimal) | p (a p-value, 3 decimals) | budget (None = full) | date
    format: str = "text"
    group: str = ""  # "provenance": shown muted, after the scores
    #: shown by default; the other columns wait behind the page's "show all columns" toggle
    primary: bool = False

    @property
    def numeric(self) -> bool:
        return self.format in ("int", "num", "pct", "budget", "p")


COLUMNS: tuple[Column, ...] = (
    Column("method", "method", primary=True),
    Column("kind", "kind", primary=True),
    Column("dataset", "dataset", primary=True),
    Column("model", "model", primary=True),
    Column("norm", "norm", primary=True),
    Column("eps", "ε", "num"),
    Column("budget", "budget/class", "budget", primary=True),
    Column("seeds", "seeds", "int", primary=True),
    Column("standard_mean", "standard %", "pct", primary=True),
    Column("standard_std", "± std", "pct"),
    Column("robust_mean", "robust %", "pct", primary=True),
    Column("robust_std", "± std", "pct"),
    Column("robust_low", "CI low", "pct"),
    Column("robust_high", "CI high", "pct"),
    Column("robust_vs_random", "Δ vs Random", "pct", primary=True),
    Column("robust_p", "p", "p"),
    Column("robust_verdict", "verdict", primary=True),
    Column("protocol_hash", "protocol hash", group="provenance"),
    Column("dcrobench_version", "dcrobench", group="provenance"),
    Column("torch_version", "torch", group="provenance"),
    Column("device", "device", group="provenance"),
    Column("date", "date", "date", group="provenance"),
)

#: row keys of the accuracy under one extra attack (``evaluation.extra_attacks``), shown in %
ATTACK_PREFIX = "attack:"

#: keys that pick a row's table (one table per protocol version), not columns of it
SECTION_KEYS = ("protocol", "version")

#: (row key, kind) of the filter bar; a select lists the values present, a text filter matches a substring
FILTERS: tuple[tuple[str, str], ...] = (
    ("dataset", "select"), ("norm", "select"), ("budget", "select"), ("kind", "select"), ("model", "select"),
    ("method", "text"),
)


# --- rows ---------------------------------------------------------------------------------------------------------
def page_rows(cells_: Iterable[Cell], records: Iterable[Record | dict[str, Any]]) -> list[dict[str, Any]]:
    """One plain dict per cell: what it measures, its scores (fractions: mean, sample std over seeds, 95% interval) and
    the provenance of its records (``records`` must hold them; matched to cells by :func:`cell_key`)."""
    by_cell: dict[tuple, list[Record]] = {}
    for r in records:
        r = r if isinstance(r, Record) else Record.from_json(r)
        by_cell.setdefault(cell_key(r), []).append(r)
    cells_ = list(cells_)
    versus = versus_random(cells_)
    rows = [{**_cell_fields(c), **_uncertainty(c, versus.get(id(c))), **_provenance(by_cell.get(_key_of(c), []))}
            for c in cells_]
    return sorted(rows, key=_row_order)


def _key_of(c: Cell) -> tuple:
    return (c.protocol, c.version, c.hash, c.dataset, c.norm, c.model, c.method, c.budget)


def _cell_fields(c: Cell) -> dict[str, Any]:
    standard, robust = c.estimate("standard"), c.estimate("robust")  # the tables' numbers: sample std
    return {"protocol": c.protocol, "version": c.version, "method": c.method, "kind": c.kind, "dataset": c.dataset,
            "model": c.model, "norm": c.norm, "eps": c.eps, "budget": c.budget, "seeds": c.n,
            "standard_mean": standard.mean, "standard_std": standard.std,
            "robust_mean": robust.mean, "robust_std": robust.std,
            "robust_low": robust.low, "robust_high": robust.high, "protocol_hash": c.hash,
            # the per-attack table: the adversarially trained model under each extra attack on its own
            **{f"{ATTACK_PREFIX}{name}": acc for name, acc in c.attack_means().items()}}


def _uncertainty(c: Cell, versus: dict[str, Comparison] | None) -> dict[str, Any]:
    """The robust score's comparison with Random, where there is one."""
    row: dict[str, Any] = {}
    if versus is not None:
        rob = versus["robust"]
        row.update(robust_vs_random=rob.delta, robust_p=rob.p_value,
                   robust_verdict=f"{MARKERS[rob.verdict]} {rob.verdict}".strip())
    return row


def _provenance(records: list[Record]) -> dict[str, Any]:
    """Versions and devices of a cell's records (distinct values joined), and the newest record's date."""
    return {"dcrobench_version": _distinct(r.dcrobench_version for r in records),
            "torch_version": _distinct(r.env.get("torch") for r in records),
            "device": _distinct(r.env.get("device") for r in records),
            "date": max((r.created_at for r in records), key=_instant, default="")}


def _distinct(values: Iterable[Any]) -> str:
    return ", ".join(sorted({str(v) for v in values if v not in (None, "")}))


def _instant(text: str) -> tuple:
    try:
        return (1, datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp(), text)
    except (ValueError, TypeError, OverflowError):  # naive or odd dates still give a stable order
        return (0, 0.0, str(text))


def _row_order(row: dict[str, Any]) -> tuple:
    """Protocol, newest version first, then dataset, norm, model, budget (the full set first), kind, method."""
    return (row["protocol"], -row["version"], row["dataset"], row["norm"], row["model"], row["budget"] is not None,
            row["budget"] or 0, KIND_ORDER.get(row["kind"], 9), row["method"], row["protocol_hash"])


# --- the page -----------------------------------------------------------------------------------------------------
def render_page(rows: Sequence[dict[str, Any]], plots: Sequence[tuple[str, str]] = (), title: str = DEFAULT_TITLE,
                columns: Sequence[Column] = COLUMNS, reproduction: Sequence[TableSummary] = ()) -> str:
    """The page of ``rows`` (see :func:`page_rows`) and ``plots`` ((title, path relative to the page)).

    The columns are those of ``columns`` that some row carries, in that order, then any other row keys (before
    the provenance columns, format guessed: numbers as numbers). A plot whose title starts with
    ``"<protocol> v<version> "`` (as :class:`dcrobench.leaderboard.PlotSpec` titles do) is shown in that
    protocol version's section, any other plot in a section of its own. ``reproduction``: the paper's tables
    beside ours (:func:`dcrobench.reproduction.tables`), a static section before the protocols'.
    """
    plots = [(str(t), str(p)) for t, p in plots]
    shown = visible_columns(rows, columns)
    sections = _sections(rows)
    placed, parts = set(), [_reproduction_html(reproduction)] if reproduction else []
    for name, version, latest in sections:
        own = [(t, p) for t, p in plots if t.startswith(f"{name} v{version} ")]
        placed.update(own)
        parts.append(_section_html(name, version, latest, own))
    rest = [plot for plot in plots if plot not in placed]
    if rest:
        parts.append(f'<section class="plots-only">\n<h2>Plots</h2>\n{_plots_html(rest)}\n</section>')
    if not sections:
        parts.append('<p class="empty">No results yet.</p>')
    data = {"columns": [asdict(c) | {"numeric": c.numeric} for c in shown], "filters": _filters(rows),
            "attack_prefix": ATTACK_PREFIX,
            "rows": [_json_safe(r) for r in rows]}
    return _PAGE.format(title=html.escape(title), css=asset("page.css"), script=asset("page.js"), data=script_json(data),
                        sections="\n".join(parts), entries=len(rows))


def visible_columns(rows: Sequence[dict[str, Any]], columns: Sequence[Column] = COLUMNS) -> list[Column]:
    """The columns the page shows for ``rows``: see :func:`render_page`."""
    carried = list(dict.fromkeys(k for r in rows for k in r if k not in SECTION_KEYS))  # first-seen order
    known = [c for c in columns if c.key in carried]
    known_keys = {c.key for c in columns}
    extra = [Column(k, f"{k[len(ATTACK_PREFIX):]} %", "pct") if k.startswith(ATTACK_PREFIX)
             else Column(k, k.replace("_", " "), _guess_format(rows, k)) for k in carried if k not in known_keys]
    first_provenance = next((i for i, c in enumerate(known) if c.group == "provenance"), len(known))
    return known[:first_provenance] + extra + known[first_provenance:]


@cache
def asset(name: str) -> str:
    """The text of ``dcrobench/assets/<name>`` (the page's CSS and JS), inlined so the page stays one offline file."""
    return resources.files("dcrobench").joinpath("assets", name).read_text(encoding="utf-8")


def _guess_format(rows: Sequence[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    numbers = values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return "num" if numbers else "text"


def _sections(rows: Sequence[dict[str, Any]]) -> list[tuple[str, int, bool]]:
    """(protocol, version, is the latest version) of the rows: per protocol, newest version first."""
    versions = sorted({(r["protocol"], r["version"]) for r in rows}, key=lambda nv: (nv[0], -nv[1]))
    latest = {}
    for name, version in versions:
        latest.setdefault(name, version)
    return [(name, version, latest[name] == version) for name, version in versions]


def _filters(rows: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"key": key, "kind": kind} for key, kind in FILTERS if any(key in r for r in rows)]


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinities (not JSON) as null: the page shows them as missing."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def script_json(obj: Any) -> str:
    """``obj`` as JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` appears literally, so no string
    can close the element (``</script>``) or open a comment (``<!--``); JSON.parse reads the escapes back."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _section_html(name: str, version: int, latest: bool, plots: Sequence[tuple[str, str]]) -> str:
    heading = f"{html.escape(name)} v{version}" + ("" if latest else ' <span class="archived">archived</span>')
    attrs = f'data-protocol="{html.escape(name)}" data-version="{version}"'
    plots_part = f"\n<h3>Plots</h3>\n{_plots_html(plots)}" if plots else ""
    return (f'<section class="protocol" {attrs}>\n<h2>{heading}</h2>\n<p class="count"></p>\n'
            f'<div class="table-wrap"></div>{plots_part}\n</section>')


def _reproduction_html(tables: Sequence[TableSummary]) -> str:
    """The paper's numbers beside ours: static tables (no sorting or filtering: the paper's order is the point)."""
    parts = ['<section class="reproduction">', "<h2>Reproducing the paper</h2>", f'<p class="about">{html.escape(INTRO)}</p>']
    for t in tables:
        parts += [f"<h3>{html.escape(t.title)}</h3>", f'<p class="count">{html.escape(t.summary(code=""))}</p>']
        if t.run:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in REPRODUCTION_HEADERS)
            body = "\n".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in t.rows)
            parts.append(f'<div class="table-wrap"><table class="static"><thead><tr>{head}</tr></thead>\n'
                         f"<tbody>\n{body}\n</tbody></table></div>")
    return "\n".join(parts + ["</section>"])


def _plots_html(plots: Sequence[tuple[str, str]]) -> str:
    figures = [f'<figure><a href="{html.escape(path)}"><img src="{html.escape(path)}" alt="{html.escape(title)}">'
               f'</a><figcaption>{html.escape(title)}</figcaption></figure>' for title, path in plots]
    return '<div class="plots">\n' + "\n".join(figures) + "\n</div>"


def write_page(records: Iterable[Record | dict[str, Any]], out_dir: Path, plots: Sequence[tuple[str, str]] = (),
               title: str = DEFAULT_TITLE) -> Path:
    """Write ``<out_dir>/index.html`` for valid, distinct ``records``; ``plots`` as in :func:`render_page`."""
    from .fileio import atomic_write_text

    path = Path(out_dir) / PAGE_FILE
    atomic_write_text(path, page_text(records, plots, title))
    return path


def page_text(records: Iterable[Record | dict[str, Any]], plots: Sequence[tuple[str, str]] = (),
              title: str = DEFAULT_TITLE) -> str:
    """The page's HTML for ``records`` (what ``write_page`` writes and ``leaderboard check`` compares)."""
    records = [r if isinstance(r, Record) else Record.from_json(r) for r in records]
    all_cells = cells(records)
    return render_page(page_rows(all_cells, records), plots, title, reproduction=reproduction_tables(all_cells))


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p class="about">Standard score: clean test accuracy of the standard-trained model. Robust score: accuracy of the
adversarially trained model under the pointwise worst case of every attack run. Mean and sample std over seeds,
in %; CI: the robust score's 95% interval (bootstrap over seeds and test points); Δ vs Random, p and verdict: the
robust score against Random at the same budget on the same test points (exact McNemar test, 5%). One table per protocol version; versions are never mixed. Click a column header to sort.
Bold: the best standard and robust score among the entries a table shows (the full-data reference excluded). The
full-data row (budget "full") is the reference: it stays in view under a budget filter.</p>
<noscript><p class="noscript">The tables need JavaScript, which is off: the {entries} entries are in the JSON
data inside this file, and the plots are below.</p></noscript>
<form id="filters" class="filters" autocomplete="off"></form>
</header>
<main>
{sections}
</main>
<footer>Generated by <code>dcrobench leaderboard publish</code>; do not edit by hand.</footer>
<script type="application/json" id="leaderboard-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
