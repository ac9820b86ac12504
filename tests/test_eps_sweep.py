"""Robustness curves (issue 17): ``evaluation.eps_sweep`` attacks the adversarially trained model at multiples of
the protocol's epsilon, records the curve and plots it; protocols without it keep their hashes."""

import dataclasses

import pytest
import yaml
from click.testing import CliRunner

import dcrobench
from dcrobench.aggregate import cells
from dcrobench.cli import main
from dcrobench.errors import ProtocolError
from dcrobench.leaderboard import plot_specs
from dcrobench.protocol import SHARED_BLOCKS, load_protocol, protocol_from_dict
from tests.helpers import TINY_PROTOCOL


def tiny(**evaluation):
    raw = yaml.safe_load(open(TINY_PROTOCOL))
    raw["evaluation"] = {**raw["evaluation"], **evaluation}
    return raw


def test_the_curve_is_recorded_with_the_robust_score_at_1x_and_plotted(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny(eps_sweep=[2, 0.25, 1])))
    records = dcrobench.run("random", "digits", protocol=str(path), seeds=1, norms=("linf", "l2"),
                            results=tmp_path / "r", threads=1)
    for rec in records:
        curve = rec.adversarial.eps_curve
        assert [p["multiple"] for p in curve] == [0.25, 1.0, 2.0]
        assert [p["eps"] for p in curve] == pytest.approx([0.25 * rec.eps, rec.eps, 2 * rec.eps])
        assert curve[1]["robust_acc"] == rec.scores.robust  # the headline score stays at the protocol's eps
        assert curve[0]["robust_acc"] >= curve[1]["robust_acc"] >= curve[2]["robust_acc"]
        assert rec.standard.eps_curve is None
    all_cells = cells(records)
    assert {s.kind for s in plot_specs(all_cells)} >= {"eps"}
    res = CliRunner().invoke(main, ["leaderboard", "publish", "--results", str(tmp_path / "r"),
                                    "--out", str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "lb" / "plots").glob("*-eps.png")) == \
        ["tiny-v1-digits-l2-eps.png", "tiny-v1-digits-linf-eps.png"]


def test_a_protocol_without_a_sweep_keeps_its_hash_and_bad_sweeps_are_refused():
    quick = load_protocol("quick")
    # quick v2 is v4 without the sweep, the extra attacks and their settings: its records' hash
    v2 = dataclasses.replace(quick, version=2, evaluation=dataclasses.replace(quick.evaluation, eps_sweep=(),
                                                                               extra_attacks=()),
                             attacks={k: v for k, v in quick.attacks.items() if k in ("apgd-ce", "apgd-dlr", "pgd")})
    # (hashed by the rule of its time, which counted the proxy block for every method: SHARED_BLOCKS)
    assert v2.hash_for("random", SHARED_BLOCKS) == "7b328ef2d03c"
    plain = protocol_from_dict(tiny())
    assert protocol_from_dict(tiny(eps_sweep=[])).hash == plain.hash != protocol_from_dict(tiny(eps_sweep=[1, 2])).hash
    for bad in ([0, 1], [1, 1], ["x"]):
        with pytest.raises(ProtocolError, match="evaluation.eps_sweep"):
            protocol_from_dict(tiny(eps_sweep=bad))
