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
    random_row = v1.split("| random")[1].splitlines()[0]
    assert "85.00 ± 7.07 [" in random_row and "**45.00 ± 7.07 [" in random_row  # sample std (ddof=1)
    assert "] n=2" in random_row and random_row.count("| ref") == 2
    herding_row = v1.split("| herding")[1].splitlines()[0]
    assert "| 70.00 n=1 " in herding_row and "±" not in herding_row and "**30.00" not in herding_row  # n = 1
    assert "| -15.00 n/a " in herding_row  # no per-point flags: a difference of means, untested
    assert "ddof=1" in md
    assert "| 10.00 n=1 " in v2 and "85.00" not in v2


def test_tables_split_by_dataset_and_norm():
    md = render_markdown([rec("random", 0, 0.8, 0.4), rec("random", 0, 0.8, 0.3, norm="l2"),
                          rec("random", 0, 0.6, 0.2, dataset="digits")])
    assert md.count("## quick v1") == 3
    assert "digits · linf" in md and "mnist5k · l2" in md and "mnist5k · linf" in md


def test_no_records():
    assert "No results yet" in render_markdown([])


def test_publish_splits_per_protocol_version_and_check_sees_every_file(tmp_path):
    from dcrobench.leaderboard import check_published, publish, publish_command, publish_files

    records = [rec("random", 0, 0.80, 0.40), rec("herding", 0, 0.70, 0.45), rec("random", 0, 0.6, 0.2, version=2)]
    files = publish_files(records, "cmd")
    assert list(files) == ["README.md", "quick-v2.md", "quick-v1.md"]
    index = files["README.md"]
    assert "[quick v2](quick-v2.md) | latest" in index and "[quick v1](quick-v1.md) | archived" in index
    assert "## Best robust score" in index and "Scores," not in index and "protocol hash(es)" not in index
    assert "| [quick v2](quick-v2.md) | mnist5k" in index  # best scores: latest versions only
    v1 = files["quick-v1.md"]
    assert "## quick v1" in v1 and "### Scores, linf, mlp, 50 images per class" in v1 and "protocol hash(es)" in v1
    assert "**45.00 n=1**" in v1 and "quick v2" not in v1.split("## quick v1")[1]

    command = publish_command(tmp_path, tmp_path)
    publish(records, tmp_path, command, plots=False)
    assert check_published(records, tmp_path, tmp_path, plots=False) == []
    (tmp_path / "quick-v1.md").unlink()
    assert any("quick-v1.md: missing" in p for p in check_published(records, tmp_path, tmp_path, plots=False))
    publish(records, tmp_path, command, plots=False)
    (tmp_path / "quick-v2.md").write_text((tmp_path / "quick-v2.md").read_text() + "x")
    assert any("quick-v2.md: out of date" in p for p in check_published(records, tmp_path, tmp_path, plots=False))
    publish(records, tmp_path, command, plots=False)
    only_v1 = records[:2]  # v2 gone from the records: its file is reported, and the next publish removes it
    problems = check_published(only_v1, tmp_path, tmp_path, plots=False)
    assert any("quick-v2.md: left by an earlier publish" in p for p in problems)
    publish(only_v1, tmp_path, command, plots=False)
    assert not (tmp_path / "quick-v2.md").exists()
    assert check_published(only_v1, tmp_path, tmp_path, plots=False) == []


def test_the_changelog_counts_records_carried_over_a_version_bump():
    import dataclasses

    from dcrobench.aggregate import cells
    from dcrobench.leaderboard import _by_version, changelog_lines

    old = [score_record("random", s, 0.9, 0.5, version=3) for s in (0, 1)]
    carried = [dataclasses.replace(r, protocol=dataclasses.replace(r.protocol, version=4, hash="h4",
                                                                   extra={"carried_from": {"version": 3, "hash": "h3"}}))
               for r in old]
    new = [score_record("mcs", 0, 0.9, 0.4, version=4)]
    lines = changelog_lines(_by_version(cells(old + carried + new)))
    assert lines[1].endswith("v3 archived; 2 records carried from v3 (their method's settings unchanged)")
    assert "carried" not in lines[0]
