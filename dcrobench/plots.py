"""PNG plots for the leaderboard: standard-vs-robust scatter (paper Fig. 2), score-vs-budget curves (Figs. 3-4) and
robust score against cost (a Pareto plot) and robust accuracy against the attack radius (``eps_sweep``), as small
multiples with one colour and marker per method.

Readable at 25 methods: every method has its own colour (a 25-colour palette) and marker and a number, written
beside each of its points and in front of its name in the legend (complete, one entry per method). Score axes
start at 0 unless every score drawn is well above it; then the axis spans at least :data:`MIN_SPAN` points and is
marked as broken (diagonal marks on the spine and "axis from N, not 0" in its label), so that a difference of a
point never fills a panel.

Plots draw cells of :mod:`dcrobench.aggregate` (they never group records themselves). Each PNG carries, in a
``tEXt`` chunk named :data:`DATA_KEY`, the digest of the data it was drawn from (:func:`data_digest`), so that
`leaderboard check` knows a plot is stale when the records it was drawn from change."""

from __future__ import annotations

import hashlib
import io
import json
import statistics
import struct
import zlib
from pathlib import Path
from typing import Any

from .aggregate import KIND_ORDER, Cell, method_labels
from .stats import sample_std

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: the PNG text key of the digest of a plot's data
DATA_KEY = "dcrobench-data"
#: bump when the plots draw their data differently: every published plot is then out of date
PLOT_FORMAT = 2
#: the fields of a cell each kind of plot draws (besides the method, hash and kind, which give every cell its
#: label, colour and marker, and the budget, which gives its panel). A plotter that reads another field of a cell
#: must name it here, or check will not see its plot go stale when that field changes.
PLOT_FIELDS = {
    "scatter": ("standard", "robust"),
    "pareto": ("robust", "cost_s"),
    "budget": ("norm", "standard", "robust"),
    "eps": ("eps_curves",),
}


def plot_data(kind: str, cells: list[Cell], title: str) -> dict[str, Any]:
    """Exactly what a plot of ``kind`` draws of ``cells`` (in their order) under ``title``."""
    rows = []
    for c in cells:
        row: dict[str, Any] = {"method": c.method, "hash": c.hash, "kind": c.kind, "budget": c.budget}
        for name in PLOT_FIELDS[kind]:
            value = getattr(c, name)
            row[name] = [sorted(d.items()) if d else None for d in value] if name == "eps_curves" else value
        rows.append(row)
    return {"format": PLOT_FORMAT, "plot": kind, "title": title, "cells": rows}


def data_digest(kind: str, cells: list[Cell], title: str) -> str:
    """``sha256:<hex>`` of :func:`plot_data`: what a published plot carries and check recomputes from the records."""
    blob = json.dumps(plot_data(kind, cells, title), sort_keys=True, separators=(",", ":"))  # NaN costs: "NaN"
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def png_text(data: bytes) -> dict[str, str]:
    """The ``tEXt`` chunks of PNG bytes (key -> text), read up to the first damaged chunk; {} for no PNG."""
    if not data.startswith(PNG_MAGIC):
        return {}
    out, i = {}, len(PNG_MAGIC)
    while i + 12 <= len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + length]
        if len(body) != length or data[i + 8 + length:i + 12 + length] != struct.pack(">I", zlib.crc32(kind + body)):
            break
        if kind == b"tEXt" and b"\0" in body:
            key, _, text = body.partition(b"\0")
            out.setdefault(key.decode("latin-1"), text.decode("latin-1"))
        if kind == b"IEND":
            break
        i += 12 + length
    return out


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, digest: str) -> None:
    """The PNG, with the digest of its data and no Software entry (the same bytes for the same data)."""
    from .fileio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight", metadata={"Software": None, DATA_KEY: digest})
    atomic_write_bytes(Path(path), buf.getvalue())


def _pct(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one seed) in %, as in the tables."""
    return 100 * statistics.fmean(values), 100 * (sample_std(values) or 0.0)


#: one marker per method beside its colour; colour and marker cycle at different paces (25 and 12), so no two of
#: the first 300 methods look alike
MARKERS = "osD^vP*Xph<>"
#: 25 colours far apart from each other (tab10, then Kelly's colours of maximum contrast, pale ones left out)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#000000", "#875692", "#f6a600", "#a1caf1", "#be0032", "#c2b280", "#008856", "#e68fac",
           "#0067a5", "#604e97", "#b3446c", "#882d17", "#8db600", "#654522", "#2b3d26")
#: a score axis whose scores all lie above this (in %) is not drawn from 0 but marked as broken
ZERO_BELOW = 15.0
#: the least span (points of %) of a score axis that does not start at 0
MIN_SPAN = 20.0


def method_styles(cells: list[Cell], label: dict) -> tuple[list[str], dict[str, tuple[Any, str]]]:
    """Methods in table order and one (colour, marker) each, no two alike and the same in every plot of cells
    with the same methods; a method's number in the plots is its place in this order, from 1."""
    kind = {label[(c.method, c.hash)]: c.kind for c in cells}
    methods = sorted(kind, key=lambda m: (KIND_ORDER.get(kind[m], 9), m))
    return methods, {m: (PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]) for i, m in enumerate(methods)}


def _numbers(methods: list[str]) -> dict[str, str]:
    return {m: str(i + 1) for i, m in enumerate(methods)}


def _tag(ax, x: float, y: float, text: str, colour) -> None:
    """A method's number beside its point (its direct label)."""
    ax.annotate(text, (x, y), xytext=(3, 2), textcoords="offset points", fontsize=6.5, color=colour,
                clip_on=True, annotation_clip=True)


def _height(n_methods: int) -> float:
    """Figure height (inches) that fits a one-column legend of ``n_methods`` entries at font size 7.5."""
    return max(4.2, 0.19 * n_methods + 1.0)


def _panels(plt, n: int, height: float, width: float = 4.6, sharey: bool = True):
    fig, axes = plt.subplots(1, n, figsize=(width * n + 2.4, height), squeeze=False, sharey=sharey)
    return fig, list(axes[0])


def _legend(ax, methods: list[str], style: dict, full_as_lines: bool = False) -> None:
    """Every method, numbered as beside its points, outside the panels; ``full_as_lines``: the full-set baseline
    is drawn as dotted lines."""
    from matplotlib.lines import Line2D

    number = _numbers(methods)
    handles = [Line2D([], [], color=style[m][0], marker=style[m][1], linestyle="", markersize=6,
                      label=f"{number[m]:>2}  {m}") for m in methods if not (full_as_lines and m == "full")]
    if full_as_lines and "full" in methods:
        handles.append(Line2D([], [], color="grey", linestyle=":", label="full set (dotted)"))
    ax.legend(handles=handles, fontsize=7.5, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False,
              handletextpad=0.3, labelspacing=0.35)


def score_range(values: list[float]) -> tuple[float, float, bool]:
    """(low, high, broken) of a score axis (in %) drawing ``values``: from 0 when some value is below
    :data:`ZERO_BELOW`, else from a multiple of 5 under the lowest value, at least :data:`MIN_SPAN` wide (and
    ``broken``: the axis is marked as not starting at 0); high is a multiple of 5 over the highest, at most 100
    unless a value (with its error bar) goes past it."""
    import math

    values = [v for v in values if v == v]
    if not values:
        return 0.0, 100.0, False
    lo, hi = min(values), max(values)
    top = math.ceil((hi + 1.5) / 5) * 5
    if lo < ZERO_BELOW:
        return 0.0, float(max(top, 10)), False
    low = math.floor((lo - 1.5) / 5) * 5
    top = max(top, low + MIN_SPAN)
    if top > 100 and hi <= 100:
        low, top = min(low, 100 - MIN_SPAN), 100
    return float(low), float(top), low > 0


def _score_axis(ax, which: str, values: list[float], label: str, mark_label: bool = True) -> None:
    """Set a score axis (``which``: "x" or "y") by :func:`score_range`; a broken one gets diagonal marks at its
    start and says so in its label."""
    low, high, broken = score_range(values)
    (ax.set_xlim if which == "x" else ax.set_ylim)(low, high)
    if broken:
        label = f"{label} · axis from {low:g}, not 0"
        kw = {"transform": ax.transAxes, "color": "black", "linewidth": 0.9, "clip_on": False}
        for d in (0.0, 0.018):
            if which == "y":
                ax.plot([-0.02, 0.02], [0.005 + d, 0.025 + d], **kw)
            else:
                ax.plot([0.005 + d, 0.025 + d], [-0.02, 0.02], **kw)
    if mark_label:
        (ax.set_xlabel if which == "x" else ax.set_ylabel)(label)


def _budget_title(b: int | None) -> str:
    return "full set" if b is None else f"{b} images / class"


def _bars(values: list[tuple[float, float]]) -> list[float]:
    """The ends of mean ± std error bars: what a score axis must show."""
    return [v for m, e in values for v in (m - e, m + e)]


def scatter(cells: list[Cell], path: Path, title: str) -> None:
    """Standard vs robust score, one panel per budget (small multiples), one colour, marker and number per method,
    sample-std error bars; the full-set baseline is drawn in every panel as a reference (grey cross-hair)."""
    plt = _figure()
    label = method_labels(cells)
    methods, style = method_styles(cells, label)
    number = _numbers(methods)
    budgets = sorted({c.budget for c in cells if c.budget is not None}) or [None]
    full = [c for c in cells if c.budget is None]
    fig, axes = _panels(plt, len(budgets), _height(len(methods)))
    ys_all = [_pct(c.robust) for c in cells]
    for ax, b in zip(axes, budgets):
        xs_here = [_pct(c.standard) for c in cells if c.budget == b or c.budget is None]
        for c in [c for c in cells if c.budget == b]:
            (xs, xe), (ys, ye) = _pct(c.standard), _pct(c.robust)
            m = label[(c.method, c.hash)]
            colour, marker = style[m]
            ax.errorbar(xs, ys, xerr=xe, yerr=ye, fmt=marker, color=colour, capsize=2, markersize=5,
                        elinewidth=0.8)
            _tag(ax, xs, ys, number[m], colour)
        for c in full:
            ax.axvline(_pct(c.standard)[0], color="grey", linewidth=0.8, linestyle=":")
            ax.axhline(_pct(c.robust)[0], color="grey", linewidth=0.8, linestyle=":")
        _score_axis(ax, "x", _bars(xs_here), "standard score (%)")
        _score_axis(ax, "y", _bars(ys_all), "robust score (%)", mark_label=ax is axes[0])
        ax.set_title(_budget_title(b), fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _legend(axes[-1], methods, style, full_as_lines=True)
    _save(fig, path, data_digest("scatter", cells, title))
    plt.close(fig)


def _plain_log_ticks(axis) -> None:
    """Log scale labelled with plain numbers at the major ticks only (minor labels overlap)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))  # 1, 10, 100: the same in every panel
    axis.set_minor_formatter(NullFormatter())


def pareto(cells: list[Cell], path: Path, title: str) -> None:
    """Robust score against the cost of getting the model (compression + training seconds, log scale), one
    panel per budget; the staircase joins the cells no other cell beats on both (the Pareto front)."""
    plt = _figure()
    label = method_labels(cells)
    methods, style = method_styles(cells, label)
    number = _numbers(methods)
    budgets = sorted({c.budget for c in cells if c.budget is not None}) or [None]
    fig, axes = _panels(plt, len(budgets), _height(len(methods)))
    ys_all = []
    for ax, b in zip(axes, budgets):
        points = []
        for c in [c for c in cells if c.budget in (b, None)]:
            cost = [v for v in c.cost_s if v == v and v > 0]  # nan or 0: not recorded
            if not cost:
                continue
            x, y = sum(cost) / len(cost), _pct(c.robust)[0]
            m = label[(c.method, c.hash)]
            colour, marker = style[m]
            ax.plot(x, y, marker=marker, color=colour, linestyle="", markersize=6)
            _tag(ax, x, y, number[m], colour)
            points.append((x, y))
        ys_all += [y for _, y in points]
        front, best = [], -1.0
        for x, y in sorted(points):
            if y > best:
                front.append((x, y))
                best = y
        if len(front) > 1:
            ax.step([x for x, _ in front], [y for _, y in front], where="post", color="black", linewidth=0.8, alpha=0.6)
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel("compression + training cost (s, log)")
        ax.set_title(_budget_title(b) + (" (and the full set)" if b is not None else ""), fontsize=10)
        ax.grid(alpha=0.3, which="both")
    for ax in axes:
        _score_axis(ax, "y", ys_all, "robust score (%)", mark_label=ax is axes[0])
    fig.suptitle(title)
    _legend(axes[-1], methods, style)
    _save(fig, path, data_digest("pareto", cells, title))
    plt.close(fig)


def budget_curves(cells: list[Cell], path: Path, title: str) -> None:
    """Score against images per class, small multiples: one panel per (norm, score), one colour, marker and
    number per method (the number at the end of its curve); the full-set baseline a dotted line."""
    plt = _figure()
    norms = sorted({c.norm for c in cells})
    label = method_labels(cells)
    methods, style = method_styles(cells, label)
    number = _numbers(methods)
    panels = [(norm, score) for norm in norms for score in ("standard", "robust")]
    fig, axes = _panels(plt, len(panels), _height(len(methods)), sharey=False)
    for ax, (norm, score) in zip(axes, panels):
        by_method: dict[str, dict[int | None, Cell]] = {}
        for c in cells:
            if c.norm == norm:
                by_method.setdefault(label[(c.method, c.hash)], {})[c.budget] = c
        drawn = []
        for method in [m for m in methods if m in by_method]:
            colour, marker = style[method]
            by_budget = by_method[method]
            if None in by_budget:  # the full set: a horizontal reference line
                drawn.append(_pct(getattr(by_budget[None], score)))
                ax.axhline(drawn[-1][0], color="grey", linestyle=":", linewidth=1)
            bs = sorted(b for b in by_budget if b is not None)
            if bs:
                ms = [_pct(getattr(by_budget[b], score)) for b in bs]
                drawn += ms
                ax.errorbar(bs, [m for m, _ in ms], yerr=[e for _, e in ms], color=colour, marker=marker,
                            markersize=4, capsize=2, linewidth=1, elinewidth=0.8)
                _tag(ax, bs[-1], ms[-1][0], number[method], colour)
        ax.set_xscale("log")
        ax.set_xticks(sorted({c.budget for c in cells if c.budget is not None}))
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel("images per class")
        _score_axis(ax, "y", _bars(drawn), f"{score} score (%)")
        ax.set_title(f"{norm} · {score}", fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _legend(axes[-1], methods, style, full_as_lines=True)
    _save(fig, path, data_digest("budget", cells, title))
    plt.close(fig)


def eps_curves(cells: list[Cell], path: Path, title: str) -> None:
    """Robust accuracy of the adversarially trained model against the attack radius (multiples of the
    protocol's eps), one panel per budget, one colour, marker and number per method (the number at the
    protocol's eps)."""
    plt = _figure()
    label = method_labels(cells)
    methods, style = method_styles(cells, label)
    number = _numbers(methods)
    budgets = sorted({c.budget for c in cells if c.budget is not None and c.eps_curve()}) or [None]
    fig, axes = _panels(plt, len(budgets), _height(len(methods)))
    ys_all = []
    for ax, b in zip(axes, budgets):
        for c in [c for c in cells if c.budget in (b, None)]:
            curve = c.eps_curve()
            if not curve:
                continue
            m = label[(c.method, c.hash)]
            colour, marker = style[m]
            ys = [100 * v for v in curve.values()]
            ys_all += ys
            ax.plot(list(curve), ys, color=colour, marker=marker, markersize=4,
                    linewidth=1, linestyle=":" if c.budget is None else "-")
            at = min(curve, key=lambda r: abs(r - 1.0))
            _tag(ax, at, 100 * curve[at], number[m], colour)
        ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("attack radius (× protocol ε)")
        ax.set_title(_budget_title(b) + (" (and the full set)" if b is not None else ""), fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes:
        _score_axis(ax, "y", ys_all, "robust accuracy (%)", mark_label=ax is axes[0])
    fig.suptitle(title)
    _legend(axes[-1], methods, style)
    _save(fig, path, data_digest("eps", cells, title))
    plt.close(fig)
