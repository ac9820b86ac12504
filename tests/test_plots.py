"""The leaderboard's plots stay readable with many methods: one colour and marker per method, every kind drawn."""

import dataclasses

from dcrobench.aggregate import cells, method_labels
from dcrobench.plots import PNG_MAGIC, budget_curves, method_styles, pareto, scatter
from tests.helpers import score_record


def many_methods(n=24):
    records = []
    for i in range(n):
        for budget in (10, 50):
            rec = score_record(f"m{i:02d}", 0, 0.5 + i / 100, 0.1 + i / 100, budget=budget)
            records.append(dataclasses.replace(rec, cost={"compress_s": 1.0 + i, "train_s": 2.0}))
    records.append(score_record("full", 0, 0.95, 0.8, kind="baseline", budget=None))
    return cells(records)


def test_every_method_gets_its_own_colour_and_marker_even_past_twenty():
    cs = many_methods()
    methods, style = method_styles(cs, method_labels(cs))
    assert len(methods) == 25
    assert len({(tuple(colour), marker) for colour, marker in style.values()}) == 25
    again = method_styles(cs[::-1], method_labels(cs))[1]
    assert again == style  # the same method looks the same in every plot


def test_scatter_pareto_and_budget_curves_write_pngs(tmp_path):
    cs = many_methods()
    for plot in (scatter, pareto, budget_curves):
        path = tmp_path / f"{plot.__name__}.png"
        plot(cs, path, "test")
        assert path.read_bytes()[:8] == PNG_MAGIC
