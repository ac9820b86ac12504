from dcrobench.leaderboard import render_markdown

from .helpers import score_record


def rec(method, seed, std, rob, version=1, kind="selection", dataset="mnist5k", norm="linf", budget=50):
    return score_record(method, seed, std, rob, version=version, kind=kind, dataset=dataset, norm=norm, budget=budget)


def test_mean_std_best_marked_and_versions_never_mixed():
    records = [rec("random", 0, 0.80, 0.40), rec("random", 1, 0.90, 0.50), rec("herding", 0, 0.70, 0.30),
               rec("random", 0, 0.10, 0.05, version=2)]
    md = render_markdown(records)
    v1 = md.split("## quick v1")[1].split("## quick v2")[0]
    v2 = md.split("## quick v2")[1]
    assert "85.00 ± 5.00 [" in v1 and "**45.00 ± 5.00 [" in v1 and v1.split("| random")[1].splitlines()[0].endswith(" 2 |")
    assert "70.00 [" in v1 and "(n = 1)" in v1 and "**30.00" not in v1  # one seed: n = 1, no "± 0.00"
    assert "10.00 [" in v2 and "85.00" not in v2


def test_tables_split_by_dataset_and_norm():
    md = render_markdown([rec("random", 0, 0.8, 0.4), rec("random", 0, 0.8, 0.3, norm="l2"),
                          rec("random", 0, 0.6, 0.2, dataset="digits")])
    assert md.count("## quick v1") == 3
    assert "digits · linf" in md and "mnist5k · l2" in md and "mnist5k · linf" in md


def test_no_records():
    assert "No results yet" in render_markdown([])
