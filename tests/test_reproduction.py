"""The paper's published numbers as data, and the section that sets ours beside them."""

import pytest

from dcrobench.aggregate import Cell
from dcrobench.reproduction import markdown_lines, paper_numbers, reproductions, tables


def _cell(protocol, method, norm, robust, budget=500, standard=0.95, version=3):
    seeds = list(range(len(robust)))
    return Cell(protocol, version, "h", "mnist", norm, "mlp", method, budget, seeds=seeds,
                standard=[standard] * len(seeds), robust=list(robust), points=[10000] * len(seeds))


def test_every_published_number_is_typed_in_once():
    numbers = paper_numbers()
    table1 = [n for n in numbers if n.protocol == "paper"]
    assert len(table1) == 12 * 4 * 2  # 12 methods, 4 data sets, standard and l_inf robust
    t3 = [n for n in numbers if n.protocol.startswith("appendix-c")]
    assert len(t3) == 2 * 3 * 3  # MNIST and CIFAR10, Raw/Rand/DM, three scores
    keys = [(n.protocol, n.dataset, n.method, n.score) for n in numbers]
    assert len(keys) == len(set(keys))
    rand = {(n.dataset, n.score): n.mean for n in numbers if n.method == "random" and n.protocol == "appendix-c-mnist"}
    assert rand == {("mnist", "standard"): 95.47, ("mnist", "linf"): 78.69, ("mnist", "l2"): 75.23}
    raw = next(n for n in numbers if n.method == "full" and n.dataset == "mnist" and n.score == "linf")
    assert raw.budget is None and (raw.mean, raw.std, raw.repeats) == (88.75, 0.23, 5)
    svhn_dm = next(n for n in numbers if n.method == "dm" and n.dataset == "svhn" and n.score == "standard")
    assert (svhn_dm.mean, svhn_dm.std, svhn_dm.model, svhn_dm.budget) == (62.23, 13.59, "resnet18", 50)


def test_verdicts_say_whether_the_paper_lies_inside_our_interval():
    cells_ = [_cell("appendix-c-mnist", "random", "linf", [0.786, 0.788, 0.787], standard=0.93),
              _cell("appendix-c-mnist", "random", "l2", [0.60, 0.61, 0.62]),
              _cell("appendix-c-mnist", "random", "l2", [0.75, 0.75, 0.75], version=2)]  # an older version: ignored
    rows = {(r.paper.method, r.paper.score): r for r in reproductions(cells_) if r.paper.protocol == "appendix-c-mnist"}
    assert rows[("random", "linf")].verdict == "paper inside our 95% CI"
    assert rows[("random", "l2")].verdict == "ours lower" and rows[("random", "l2")].delta == pytest.approx(61 - 75.23)
    assert rows[("random", "standard")].verdict == "ours lower"  # 93 against 95.47: the standard score of the linf cell
    assert rows[("full", "linf")].ours is None and rows[("full", "linf")].verdict == "not run"


def test_a_substitute_protocol_fills_a_row_and_is_marked_as_not_the_papers_setting():
    dm = next(r for r in reproductions([]) if r.paper.method == "dm" and r.paper.protocol == "appendix-c-mnist")
    assert not dm.substitute and dm.verdict == "not run"
    cells_ = [_cell("appendix-c-mnist-dm-cpu", "dm", "linf", [0.70], version=1)]
    dm = next(r for r in reproductions(cells_) if r.paper.method == "dm" and r.paper.score == "linf"
              and r.paper.protocol == "appendix-c-mnist")
    assert dm.substitute and "not the paper's setting" in dm.verdict and dm.protocol == "appendix-c-mnist-dm-cpu v1"
    paper_dm = _cell("appendix-c-mnist", "dm", "linf", [0.45, 0.46, 0.47])
    dm = next(r for r in reproductions(cells_ + [paper_dm]) if r.paper.method == "dm" and r.paper.score == "linf"
              and r.paper.protocol == "appendix-c-mnist")
    assert not dm.substitute and dm.verdict == "paper inside our 95% CI"  # the paper's own setting wins once run


def test_the_section_shows_run_tables_and_summarises_the_others():
    text = "\n".join(markdown_lines([_cell("appendix-c-mnist", "random", "linf", [0.786, 0.788, 0.787])]))
    assert "## Reproducing the paper" in text
    assert "Protocol `appendix-c-mnist`: 2 of 9 published numbers run, 1 inside our 95% interval." in text
    assert "| mnist     | random   | 500      | ℓ∞ robust | 78.69 ± 0.28 n=5" in text
    assert "Protocol `paper`: 0 of 96 published numbers run" in text and "craig" not in text
    assert [t.run for t in tables([])] == [0, 0, 0]
