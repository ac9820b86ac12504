"""The leaderboard's uncertainty (bootstrap intervals) and its paired comparison with Random (exact McNemar)."""

import dataclasses

import numpy as np
import pytest

from dcrobench.aggregate import cells, versus_random
from dcrobench.leaderboard import delta_text, publish_markdown, score_text
from dcrobench.results import encode_point_flags
from dcrobench.stats import bootstrap_estimate, compare_flags, mcnemar_exact, sample_std
from tests.helpers import score_record


def test_the_interval_covers_a_known_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    truth, points, trials = 0.3, 500, 300
    covered = 0
    for t in range(trials):
        acc = rng.binomial(points, truth, size=3) / points  # three seeds, test-point noise only
        ci = bootstrap_estimate(acc, [points] * 3, resamples=400, seed=t)
        covered += ci.low <= truth <= ci.high
        assert ci.low <= ci.mean <= ci.high
    assert 0.9 <= covered / trials <= 0.99


def test_the_interval_widens_with_fewer_points_and_a_single_seed_keeps_its_point_noise():
    wide = bootstrap_estimate([0.5], [100])
    narrow = bootstrap_estimate([0.5], [10_000])
    assert wide.n == 1 and wide.high - wide.low > 5 * (narrow.high - narrow.low) > 0
    unknown = bootstrap_estimate([0.5], [None])  # one seed, points unknown: nothing to resample
    assert unknown.low is None and unknown.high is None and unknown.std is None and unknown.n == 1
    spread = bootstrap_estimate([0.2, 0.5, 0.8], [None] * 3)
    assert spread.low < 0.4 and spread.high > 0.6  # seeds alone


def flags(n, correct, rng):
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, size=correct, replace=False)] = True
    return out


def test_mcnemar_flags_a_planted_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    random_flags = [flags(500, 250, rng) for _ in range(3)]
    better = []
    for r in random_flags:  # 60 more of 500 points right, per seed
        m = r.copy()
        m[rng.choice(np.flatnonzero(~r), size=60, replace=False)] = True
        better.append(m)
    result = compare_flags(better, random_flags)
    assert result.verdict == "better" and result.wins == 180 and result.losses == 0
    assert result.delta == pytest.approx(60 / 500) and result.p_value < 1e-10
    assert compare_flags(random_flags, better).verdict == "worse"
    swapped = []  # as many points gained as lost: no difference in accuracy
    for r in random_flags:
        m = r.copy()
        m[rng.choice(np.flatnonzero(r), size=30, replace=False)] = False
        m[rng.choice(np.flatnonzero(~r), size=30, replace=False)] = True
        swapped.append(m)
    null = compare_flags(swapped, random_flags)
    assert null.verdict == "not distinguishable" and null.delta == 0 and null.p_value == 1.0
    assert compare_flags(random_flags, random_flags).verdict == "not distinguishable"


def test_mcnemar_false_alarms_stay_near_the_level():
    rng = np.random.default_rng(2)
    alarms = sum(compare_flags([rng.random(500) < 0.4], [rng.random(500) < 0.4]).verdict != "not distinguishable"
                 for _ in range(300))
    assert alarms / 300 <= 0.08
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(10, 0) == pytest.approx(2 * 0.5 ** 10)


def flagged(record, clean, robust, fingerprint="pts"):
    """``record`` with per-point flags: the standard model's clean flags and the adversarial model's robust ones."""
    n = len(clean)
    std = dataclasses.replace(record.standard, n=n, test_fingerprint=fingerprint, clean_acc=float(np.mean(clean)),
                              flags={"encoding": "packbits-base64", "clean": encode_point_flags(clean)})
    adv = dataclasses.replace(record.adversarial, n=n, test_fingerprint=fingerprint, robust_acc=float(np.mean(robust)),
                              flags={"encoding": "packbits-base64", "clean": encode_point_flags(robust),
                                     "pgd": encode_point_flags(robust)})
    scores = dataclasses.replace(record.scores, standard=std.clean_acc, robust=adv.robust_acc)
    return dataclasses.replace(record, standard=std, adversarial=adv, scores=scores)


def test_cells_are_compared_with_random_seed_by_seed_on_the_same_test_points_only():
    rng = np.random.default_rng(3)
    records = []
    for seed in range(2):
        r = flags(400, 200, rng)
        m = r.copy()
        m[rng.choice(np.flatnonzero(~r), size=80, replace=False)] = True
        records += [flagged(score_record("random", seed, 0, 0, kind="baseline"), r, r),
                    flagged(score_record("herding", seed, 0, 0), m, m),
                    flagged(score_record("kcenter", seed, 0, 0), m, m, fingerprint="other points")]
    records.append(score_record("gm", 0, 0.5, 0.1, kind="condensation"))  # no flags (a schema-1 record)
    all_cells = cells(records)
    versus = versus_random(all_cells)
    by_method = {c.method: c for c in all_cells}
    assert "random" not in {c.method for c in all_cells if id(c) in versus}
    herding = versus[id(by_method["herding"])]["robust"]
    assert herding.verdict == "better" and herding.seeds == 2 and herding.wins == 160
    assert versus[id(by_method["kcenter"])]["robust"].verdict == "n/a"  # other test points: never paired
    assert versus[id(by_method["gm"])]["robust"].verdict == "n/a"
    assert delta_text(by_method["herding"], "robust", versus) == "+20.00 ▲"
    kcenter = versus[id(by_method["kcenter"])]["robust"]  # difference of means, untested
    assert kcenter.p_value is None and kcenter.delta == pytest.approx(0.2)
    assert delta_text(by_method["kcenter"], "robust", versus) == "+20.00 n/a"
    assert delta_text(by_method["random"], "robust", versus) == "ref"
    text = publish_markdown(records, "cmd")
    assert "Compared with Random" in text and "▲ better" in text and "ddof=1" in text
    table = text.split("### Compared with Random")[1].split("###")[0]
    assert "| herding" in table and "| kcenter" in table and "| < 0.001 |" in table


def test_a_single_seed_cell_says_n_1_instead_of_a_zero_spread():
    cell = cells([score_record("herding", 0, 0.7, 0.3)])[0]
    text = score_text(cell, "robust")
    assert text == "30.00 n=1"  # no spread, and no interval: the record does not say how many test points
    with_points = cells([flagged(score_record("herding", 0, 0, 0), np.arange(500) < 350, np.arange(500) < 150)])[0]
    text = score_text(with_points, "robust")
    assert text.startswith("30.00 [") and text.endswith("] n=1") and "±" not in text  # test points only
    e = with_points.estimate("robust")
    assert 0.25 < e.low < 0.29 and 0.31 < e.high < 0.35
    two = cells([score_record("herding", 0, 0.7, 0.3), score_record("herding", 1, 0.7, 0.4)])[0]
    assert score_text(two, "robust").startswith("35.00 ± 7.07 [") and score_text(two, "robust").endswith(" n=2")


def test_the_std_is_the_sample_std():
    assert sample_std([0.3, 0.4]) == pytest.approx(np.std([0.3, 0.4], ddof=1)) and sample_std([0.3]) is None
    assert bootstrap_estimate([0.2, 0.4, 0.6], [500] * 3).std == pytest.approx(0.2)


def test_the_interval_covers_a_mean_that_varies_from_seed_to_seed():
    """Seed effects as large as the test-point noise: both levels must be in the interval (resampling only the
    seeds covers about 81% here, only the test points about 86%)."""
    rng = np.random.default_rng(4)
    truth, points, trials, covered = 0.5, 500, 300, 0
    for t in range(trials):
        per_seed = truth + rng.normal(0, 0.02, size=5)
        acc = rng.binomial(points, per_seed) / points
        ci = bootstrap_estimate(acc, [points] * 5, resamples=400, seed=t)
        covered += ci.low <= truth <= ci.high
    assert covered / trials >= 0.92


def test_the_delta_has_the_sign_of_method_minus_random():
    rng = np.random.default_rng(5)
    r = flags(500, 300, rng)
    worse = r.copy()
    worse[rng.choice(np.flatnonzero(r), size=60, replace=False)] = False
    result = compare_flags([worse], [r])
    assert result.delta == pytest.approx(-60 / 500) and result.verdict == "worse" and result.losses == 60
