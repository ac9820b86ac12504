"""The MCS solvers run HiGHS silently: no banner, no log on the process's stdout or stderr."""

from __future__ import annotations

import numpy as np
import torch

from dcrobench_plugins.mcs import setcover
from dcrobench_plugins.mcs.distances import DistanceOracle
from dcrobench_plugins.mcs.solver import solve_eta_mcs, solve_k_mcs


def small_cover_matrix() -> np.ndarray:
    rng = np.random.default_rng(4)
    a = rng.random((12, 10)) < 0.3
    a[np.arange(10), np.arange(10)] = True  # every row coverable
    a[10:, 0] = True
    return a


def test_highs_lp_and_milp_print_nothing(capfd):
    a = small_cover_matrix()
    capfd.readouterr()
    assert setcover.lp_solution(a)[0] > 0
    assert setcover.solve_milp(a, threads=1).status == "optimal"
    assert setcover.solve_milp(a, target=2.5, cutoff=2.5, threads=1).status in ("infeasible", "optimal", "unknown")
    out, err = capfd.readouterr()
    assert out == "" and "HiGHS" not in err


def test_mcs_solves_print_nothing(capfd):
    x = torch.tensor(np.random.default_rng(9).random((40, 3)))
    capfd.readouterr()
    sol = solve_k_mcs(DistanceOracle(x, "l2"), 4)
    eta = solve_eta_mcs(DistanceOracle(x, "l2"), 0.3)
    out, err = capfd.readouterr()
    assert sol.optimal and eta.optimal
    assert out == "" and "HiGHS" not in err
