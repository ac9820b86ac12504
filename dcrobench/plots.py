"""PNG plots for the leaderboard: standard-vs-robust scatter (paper Fig. 2), score-vs-budget curves (Figs. 3-4).

Plots draw cells of :mod:`dcrobench.aggregate` (they never group records themselves)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .aggregate import KIND_ORDER, Cell, mean_std, method_labels

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from .fileio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight", metadata={"Software": None})
    atomic_write_bytes(Path(path), buf.getvalue())


def _pct(values: list[float]) -> tuple[float, float]:
    return mean_std([100 * v for v in values])


def scatter(cells: list[Cell], path: Path, title: str) -> None:
    """Mean standard vs mean robust score with std error bars: colour = method, marker = budget."""
    plt = _figure()
    from matplotlib.lines import Line2D

    label = method_labels(cells)
    methods, color = _method_colors(cells, label)
    budgets = sorted({c.budget for c in cells if c.budget is not None})
    shapes = "osD^vP*Xph"
    marker = {b: shapes[i % len(shapes)] for i, b in enumerate(budgets)}
    fig, ax = plt.subplots(figsize=(7.2, 5.0))
    for c in cells:
        (xs, xe), (ys, ye) = _pct(c.standard), _pct(c.robust)
        ax.errorbar(xs, ys, xerr=xe, yerr=ye, fmt=marker.get(c.budget, "*"), color=color[label[(c.method, c.hash)]],
                    capsize=3, markersize=9 if c.budget is None else 6)
    handles = [Line2D([], [], color=color[m], marker="o", linestyle="", label=m) for m in methods]
    handles += [Line2D([], [], color="black", marker=marker[b], linestyle="", label=f"{b} / class") for b in budgets]
    if any(c.budget is None for c in cells):
        handles.append(Line2D([], [], color="black", marker="*", markersize=9, linestyle="", label="full set"))
    ax.set_xlabel("standard score (%)")
    ax.set_ylabel("robust score (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path)
    plt.close(fig)


def _method_colors(cells: list[Cell], label: dict) -> tuple[list[str], dict[str, Any]]:
    """Methods in table order and one colour each, the same in every plot: tab20's ten full hues
    first, then their light shades (so no two of the first ten methods share a hue)."""
    import matplotlib

    kind = {label[(c.method, c.hash)]: c.kind for c in cells}
    methods = sorted(kind, key=lambda m: (KIND_ORDER.get(kind[m], 9), m))
    cmap = matplotlib.colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return methods, {m: cmap(order[i % 20]) for i, m in enumerate(methods)}


def budget_curves(cells: list[Cell], path: Path, title: str) -> None:
    """Per norm a panel: standard (solid) and robust (dashed) score against images per class, one colour per method."""
    plt = _figure()
    from matplotlib.lines import Line2D

    norms = sorted({c.norm for c in cells})
    label = method_labels(cells)
    methods, color = _method_colors(cells, label)
    fig, axes = plt.subplots(1, len(norms), figsize=(5.2 * len(norms), 4.2), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        panel = [c for c in cells if c.norm == norm]
        by_method: dict[str, dict[int | None, Cell]] = {}
        for c in panel:
            by_method.setdefault(label[(c.method, c.hash)], {})[c.budget] = c
        budgets = sorted({c.budget for c in panel if c.budget is not None})
        for method in [m for m in methods if m in by_method]:
            by_budget = by_method[method]
            if set(by_budget) == {None}:  # the full set: a horizontal reference line
                for score, style in (("standard", "-"), ("robust", "--")):
                    ax.axhline(_pct(getattr(by_budget[None], score))[0], color=color[method], linestyle=style, alpha=0.6)
                continue
            bs = [b for b in budgets if b in by_budget]
            for score, style in (("standard", "-"), ("robust", "--")):
                ms = [_pct(getattr(by_budget[b], score)) for b in bs]
                ax.errorbar(bs, [m for m, _ in ms], yerr=[s for _, s in ms], color=color[method], linestyle=style,
                            marker="o", markersize=4, capsize=2)
        ax.set_xlabel("images per class")
        ax.set_ylabel("score (%)")
        ax.set_title(f"{title} · {norm}")
        ax.grid(alpha=0.3)
    # one legend entry per method (its colour) and per score (its line style), outside the data
    handles = [Line2D([], [], color=color[m], linewidth=2.5, label=m) for m in methods]
    handles += [Line2D([], [], color="black", linestyle="-", label="standard score"),
                Line2D([], [], color="black", linestyle="--", label="robust score")]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path)
    plt.close(fig)
