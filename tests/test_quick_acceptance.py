"""Issue 2's acceptance bar: random on mnist5k under the quick protocol learns and is attackable."""

import json

from click.testing import CliRunner

from dcrobench.cli import main
from dcrobench.results import record_paths


def test_random_mnist5k_quick_protocol(tmp_path):
    res = CliRunner().invoke(main, ["run", "-m", "random", "-d", "mnist5k", "-p", "quick", "--seeds", "1",
                                    "--results", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    (path,) = record_paths(tmp_path)
    rec = json.loads(path.read_text())
    assert rec["scores"]["standard"] >= 0.80
    assert 0.0 < rec["scores"]["robust"] < rec["adversarial"]["clean_acc"]
    assert rec["standard"]["robust_acc"] < rec["scores"]["robust"]  # adversarial training helped
