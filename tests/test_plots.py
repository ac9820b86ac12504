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


def test_twenty_five_methods_get_twenty_five_colours():
    cs = many_methods()
    style = method_styles(cs, method_labels(cs))[1]
    assert len({colour for colour, _ in style.values()}) == 25


def test_score_axes_start_at_zero_or_span_at_least_twenty_points_marked_broken():
    from dcrobench.plots import MIN_SPAN, score_range

    assert score_range([3.0, 48.0]) == (0.0, 50.0, False)  # near zero: from 0
    low, high, broken = score_range([86.9, 87.6])  # a 0.7-point difference does not fill the panel
    assert broken and low > 0 and high - low >= MIN_SPAN and high <= 100 and low <= 86.9 and high >= 87.6
    low, high, broken = score_range([97.0, 99.5])
    assert high == 100 and high - low >= MIN_SPAN and broken


def test_pngs_are_deterministic_and_carry_their_digest(tmp_path):
    from dcrobench.plots import DATA_KEY, data_digest, png_text

    cs = many_methods(6)
    for plot in (scatter, pareto):
        a, b = tmp_path / "a.png", tmp_path / "b.png"
        plot(cs, a, "t")
        plot(cs, b, "t")
        assert a.read_bytes() == b.read_bytes()
        assert png_text(a.read_bytes())[DATA_KEY] == data_digest(plot.__name__, cs, "t")
