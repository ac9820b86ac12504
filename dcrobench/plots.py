"""PNG plots for the leaderboard: standard-vs-robust scatter (paper Fig. 2), score-vs-budget curves (Figs. 3-4) and
robust score against cost (a Pareto plot) and robust accuracy against the attack radius (``eps_sweep``), as small
multiples with one colour and marker per method.

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
PLOT_FORMAT = 1
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


#: one marker per method beside its colour: the 11th method reuses a hue (light shade) with another marker
MARKERS = "osD^vP*Xph<>"


def method_styles(cells: list[Cell], label: dict) -> tuple[list[str], dict[str, tuple[Any, str]]]:
    """Methods in table order and one (colour, marker) each, no two alike and the same in every plot: tab20's
    ten full hues first, then their light shades, with markers cycling at another pace."""
    import matplotlib

    kind = {label[(c.method, c.hash)]: c.kind for c in cells}
    methods = sorted(kind, key=lambda m: (KIND_ORDER.get(kind[m], 9), m))
    cmap = matplotlib.colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return methods, {m: (cmap(order[i % 20]), MARKERS[i % len(MARKERS)]) for i, m in enumerate(methods)}


def _panels(plt, n: int, width: float = 4.2, height: float = 3.9):
    fig, axes = plt.subplots(1, n, figsize=(width * n + 1.8, height), squeeze=False, sharey=True)
    return fig, list(axes[0])


def _legend(ax, methods: list[str], style: dict, full_as_lines: bool = False) -> None:
    """Methods outside the panels; ``full_as_lines``: the full-set baseline is drawn as dotted lines."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=style[m][0], marker=style[m][1], linestyle="", markersize=7, label=m)
               for m in methods if not (full_as_lines and m == "full")]
    if full_as_lines and "full" in methods:
        handles.append(Line2D([], [], color="grey", linestyle=":", label="full set"))
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)


def _budget_title(b: int | None) -> str:
    return "full set" if b is None else f"{b} images / class"


def scatter(cells: list[Cell], path: Path, title: str) -> None:
    """Standard vs robust score, one panel per budget (small multiples), one colour and marker per method,
    sample-std error bars; the full-set baseline is drawn in every panel as a reference (grey cross-hair)."""
    plt = _figure()
    label = method_labels(cells)
    methods, style = method_styles(cells, label)
    budgets = sorted({c.budget for c in cells if c.budget is not None}) or [None]
    full = [c for c in cells if c.budget is None]
    fig, axes = _panels(plt, len(budgets))
    for ax, b in zip(axes, budgets):
        for c in [c for c in cells if c.budget == b]:
            (xs, xe), (ys, ye) = _pct(c.standard), _pct(c.robust)
            colour, marker = style[label[(c.method, c.hash)]]
            ax.errorbar(xs, ys, xerr=xe, yerr=ye, fmt=marker, color=colour, capsize=2, markersize=6)
        for c in full:
            ax.axvline(_pct(c.standard)[0], color="grey", linewidth=0.8, linestyle=":")
            ax.axhline(_pct(c.robust)[0], color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("standard score (%)")
        ax.set_title(_budget_title(b), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("robust score (%)")
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
    budgets = sorted({c.budget for c in cells if c.budget is not None}) or [None]
    fig, axes = _panels(plt, len(budgets))
    for ax, b in zip(axes, budgets):
        points = []
        for c in [c for c in cells if c.budget in (b, None)]:
            cost = [v for v in c.cost_s if v == v and v > 0]  # nan or 0: not recorded
            if not cost:
                continue
            x, y = sum(cost) / len(cost), _pct(c.robust)[0]
            colour, marker = style[label[(c.method, c.hash)]]
            ax.plot(x, y, marker=marker, color=colour, linestyle="", markersize=7)
            points.append((x, y))
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
    axes[0].set_ylabel("robust score (%)")
    fig.suptitle(title)
    _legend(axes[-1], methods, style)
    _save(fig, path, data_digest("pareto", cells, title))
    plt.close(fig)


def budget_curves(cells: list[Cell], path: Path, title: str) -> None:
    """Score against images per class, small multiples: one panel per (norm, score), one colour and marker per
    method; the full-set baseline a dotted line."""
    plt = _figure()
    norms = sorted({c.norm for c in cells})
    label = method_labels(cells)
    methods, style = method_styles(cells, label)
    panels = [(norm, score) for norm in norms for score in ("standard", "robust")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.8, 3.9), squeeze=False)
    for ax, (norm, score) in zip(axes[0], panels):
        by_method: dict[str, dict[int | None, Cell]] = {}
        for c in cells:
            if c.norm == norm:
                by_method.setdefault(label[(c.method, c.hash)], {})[c.budget] = c
        for method in [m for m in methods if m in by_method]:
            colour, marker = style[method]
            by_budget = by_method[method]
            if None in by_budget:  # the full set: a horizontal reference line
                ax.axhline(_pct(getattr(by_budget[None], score))[0], color="grey", linestyle=":", linewidth=1)
            bs = sorted(b for b in by_budget if b is not None)
            if bs:
                ms = [_pct(getattr(by_budget[b], score)) for b in bs]
                ax.errorbar(bs, [m for m, _ in ms], yerr=[e for _, e in ms], color=colour, marker=marker,
                            markersize=5, capsize=2, linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks(sorted({c.budget for c in cells if c.budget is not None}))
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel("images per class")
        ax.set_ylabel(f"{score} score (%)")
        ax.set_title(f"{norm} · {score}", fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _legend(axes[0][-1], methods, style, full_as_lines=True)
    _save(fig, path, data_digest("budget", cells, title))
    plt.close(fig)


def eps_curves(cells: list[Cell], path: Path, title: str) -> None:
    """Robust accuracy of the adversarially trained model against the attack radius (multiples of the
    protocol's eps), one panel per budget, one colour and marker per method."""
    plt = _figure()
    label = method_labels(cells)
    methods, style = method_styles(cells, label)
    budgets = sorted({c.budget for c in cells if c.budget is not None and c.eps_curve()}) or [None]
    fig, axes = _panels(plt, len(budgets))
    for ax, b in zip(axes, budgets):
        for c in [c for c in cells if c.budget in (b, None)]:
            curve = c.eps_curve()
            if not curve:
                continue
            colour, marker = style[label[(c.method, c.hash)]]
            ax.plot(list(curve), [100 * v for v in curve.values()], color=colour, marker=marker, markersize=5,
                    linewidth=1, linestyle=":" if c.budget is None else "-")
        ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("attack radius (× protocol ε)")
        ax.set_title(_budget_title(b) + (" (and the full set)" if b is not None else ""), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("robust accuracy (%)")
    fig.suptitle(title)
    _legend(axes[-1], methods, style)
    _save(fig, path, data_digest("eps", cells, title))
    plt.close(fig)
