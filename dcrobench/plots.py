"""PNG plots for the leaderboard: standard-vs-robust scatter (paper Fig. 2), score-vs-budget curves (Figs. 3-4)."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from .leaderboard import KIND_ORDER, mean_std

MARKERS = {"baseline": "s", "selection": "o", "condensation": "^"}


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from .fileio import _atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _atomic_write(Path(path), lambda fh: fh.write(buf.getvalue()))


def scatter(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """One point per (method, budget, model): mean standard vs mean robust score, with std error bars."""
    plt = _figure()
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: {"standard": [], "robust": [], "kind": ""})
    for r in records:
        g = groups[(r["method"]["name"], r["budget"]["ipc"], r["model"])]
        g["standard"].append(100 * r["scores"]["standard"])
        g["robust"].append(100 * r["scores"]["robust"])
        g["kind"] = r["method"].get("kind", "")
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for (method, budget, model), g in sorted(groups.items(), key=lambda kv: (KIND_ORDER.get(kv[1]["kind"], 9), kv[0][0], kv[0][1] or 0)):
        (xs, xe), (ys, ye) = mean_std(g["standard"]), mean_std(g["robust"])
        label = method if budget is None else f"{method} ({budget})"
        ax.errorbar(xs, ys, xerr=xe, yerr=ye, fmt=MARKERS.get(g["kind"], "D"), capsize=3, label=label)
    ax.set_xlabel("standard score (%)")
    ax.set_ylabel("robust score (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
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
