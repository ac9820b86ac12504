"""PNG plots for the leaderboard: standard-vs-robust scatter (paper Fig. 2), score-vs-budget curves (Figs. 3-4)."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from .leaderboard import KIND_ORDER, mean_std


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from .fileio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    atomic_write_bytes(Path(path), buf.getvalue())


def scatter(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Mean standard vs mean robust score with std error bars: colour = method, marker = budget."""
    plt = _figure()
    from matplotlib.lines import Line2D

    groups: dict[tuple, dict[str, Any]] = defaultdict(lambda: {"standard": [], "robust": [], "kind": ""})
    for r in records:
        g = groups[(r["method"]["name"], r["budget"]["ipc"], r["model"])]
        g["standard"].append(100 * r["scores"]["standard"])
        g["robust"].append(100 * r["scores"]["robust"])
        g["kind"] = r["method"].get("kind", "")
    kind = {m: g["kind"] for (m, _, _), g in groups.items()}
    methods = sorted(kind, key=lambda m: (KIND_ORDER.get(kind[m], 9), m))
    budgets = sorted({b for _, b, _ in groups if b is not None})
    cmap = plt.get_cmap("tab20")
    color = {m: cmap(i % 20) for i, m in enumerate(methods)}
    shapes = "osD^vP*Xph"
    marker = {b: shapes[i % len(shapes)] for i, b in enumerate(budgets)}
    fig, ax = plt.subplots(figsize=(7.2, 5.0))
    for (method, budget, _model), g in groups.items():
        (xs, xe), (ys, ye) = mean_std(g["standard"]), mean_std(g["robust"])
        ax.errorbar(xs, ys, xerr=xe, yerr=ye, fmt=marker.get(budget, "*"), color=color[method], capsize=3,
                    markersize=9 if budget is None else 6)
    handles = [Line2D([], [], color=color[m], marker="o", linestyle="", label=m) for m in methods]
    handles += [Line2D([], [], color="black", marker=marker[b], linestyle="", label=f"{b} / class") for b in budgets]
    if any(b is None for _, b, _ in groups):
        handles.append(Line2D([], [], color="black", marker="*", markersize=9, linestyle="", label="full set"))
    ax.set_xlabel("standard score (%)")
    ax.set_ylabel("robust score (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path)
    plt.close(fig)


def budget_curves(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Per norm a panel: standard (solid) and robust (dashed) score against images per class, one colour per method."""
    plt = _figure()
    norms = sorted({r["norm"] for r in records})
    fig, axes = plt.subplots(1, len(norms), figsize=(5.2 * len(norms), 4.2), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        by_method: dict[str, dict[int | None, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: {"standard": [], "robust": []}))
        for r in records:
            if r["norm"] == norm:
                cell = by_method[r["method"]["name"]][r["budget"]["ipc"]]
                cell["standard"].append(100 * r["scores"]["standard"])
                cell["robust"].append(100 * r["scores"]["robust"])
        budgets = sorted({b for m in by_method.values() for b in m if b is not None})
        for i, (method, cells) in enumerate(sorted(by_method.items())):
            color = f"C{i % 10}"
            if set(cells) == {None}:  # the full set: a horizontal reference line
                for score, style in (("standard", "-"), ("robust", "--")):
                    ax.axhline(mean_std(cells[None][score])[0], color=color, linestyle=style, alpha=0.6,
                               label=f"{method} {score}")
                continue
            bs = [b for b in budgets if b in cells]
            for score, style in (("standard", "-"), ("robust", "--")):
                ms = [mean_std(cells[b][score]) for b in bs]
                ax.errorbar(bs, [m for m, _ in ms], yerr=[s for _, s in ms], color=color, linestyle=style, marker="o",
                            capsize=2, label=f"{method} {score}")
        ax.set_xlabel("images per class")
        ax.set_ylabel("score (%)")
        ax.set_title(f"{title} · {norm}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    _save(fig, path)
    plt.close(fig)
