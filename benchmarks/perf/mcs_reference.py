"""The paper's Algorithm 1 as published (reference for benchmarks/perf/mcs_vs_reference.py).

Dense pairwise distance matrix (a loop over rows, as the authors' code loops over pairs), then a
continuous bisection of eta on [0, max D] until eta_u - eta_l <= 1e-3, solving at each step the
feasibility MILP ``A(eta) s >= 1, sum(s) = k`` (binary s) — here with HiGHS through Pyomo instead
of Gurobi — and a final solve at eta_u. Written from the paper and the published algorithm.
"""

from __future__ import annotations

import time

import numpy as np
import torch


def dense_distances(x: torch.Tensor, metric: str = "l2") -> np.ndarray:
    p = {"l2": 2, "l1": 1, "linf": float("inf")}[metric]
    x = x.reshape(x.shape[0], -1).double()
    n = x.shape[0]
    d = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):  # row loop (the published code loops over every pair)
        d[i, i:] = torch.linalg.vector_norm(x[i:] - x[i], ord=p, dim=1)
        d[i:, i] = d[i, i:].clone()
    return d.numpy()


def feasible_k(d: np.ndarray, eta: float, k: int, time_limit: float | None = None, threads: int = 1):
    """Is there s in {0,1}^n, sum(s) = k, A(eta) s >= 1?

    -> (chosen indices | None when infeasible | False when the time limit stopped it, build_s, solve_s).
    """
    import pyomo.environ as pyo
    from dcrobench_plugins.mcs.setcover import highs_threads
    from pyomo.contrib.solver.common.factory import SolverFactory
    from pyomo.contrib.solver.common.results import TerminationCondition as TC

    t0 = time.perf_counter()
    a = d <= eta
    n = a.shape[0]
    m = pyo.ConcreteModel()
    m.s = pyo.Var(range(n), domain=pyo.Binary)
    m.obj = pyo.Objective(expr=pyo.quicksum(m.s[j] for j in range(n)), sense=pyo.maximize)
    rows = [np.flatnonzero(a[i]).tolist() for i in range(n)]
    m.c = pyo.Constraint(range(n), rule=lambda mm, i: pyo.quicksum(mm.s[j] for j in rows[i]) >= 1)
    m.card = pyo.Constraint(expr=pyo.quicksum(m.s[j] for j in range(n)) == k)
    t1 = time.perf_counter()
    res = SolverFactory("highs").solve(m, time_limit=time_limit, load_solutions=False,
                                       raise_exception_on_nonoptimal_result=False,
                                       solver_options={"threads": highs_threads(threads), "output_flag": False})
    t2 = time.perf_counter()
    if res.termination_condition == TC.convergenceCriteriaSatisfied and res.incumbent_objective is not None:
        vals = res.solution_loader.get_vars()
        return [j for j in range(n) if (vals.get(m.s[j]) or 0) > 0.5], t1 - t0, t2 - t1
    if res.termination_condition in (TC.provenInfeasible, TC.infeasibleOrUnbounded):
        return None, t1 - t0, t2 - t1
    return False, t1 - t0, t2 - t1  # stopped by the time limit: undecided


def algorithm1(x: torch.Tensor, k: int, metric: str = "l2", tol: float = 1e-3, threads: int = 1,
               log=None, time_limit: float | None = None) -> dict:
    """Algorithm 1. ``time_limit`` (seconds, whole run): when it stops a MILP the run ends
    unfinished (``finished`` False): its time is then only a lower bound on the reference's.

    ``cpu_seconds`` is the process's CPU time over the run: with one thread it equals the wall
    time on an idle machine, and unlike it does not grow while other work shares the cores.
    """
    t0 = time.perf_counter()
    c0 = time.process_time()

    def left() -> float | None:
        return None if time_limit is None else max(1.0, time_limit - (time.perf_counter() - t0))

    d = dense_distances(x, metric)
    t_dist = time.perf_counter() - t0
    lo, hi = 0.0, float(d.max())
    steps, build, solve = 0, 0.0, 0.0
    stopped = False
    while hi - lo > tol:
        eta = (lo + hi) / 2
        sol, b, s = feasible_k(d, eta, k, time_limit=left(), threads=threads)
        steps, build, solve = steps + 1, build + b, solve + s
        if log:
            verdict = "undecided (time limit)" if sol is False else "feasible" if sol else "infeasible"
            log(f"  ref step {steps}: eta={eta:.5f} {verdict} (build {b:.1f}s, solve {s:.1f}s; "
                f"cpu so far {time.process_time() - c0:.1f}s)")
        if sol is False:
            stopped = True
            break
        if sol is None:
            lo = eta
        else:
            hi = eta
    centers = None
    if not stopped:
        sol, b, s = feasible_k(d, hi, k, time_limit=left(), threads=threads)
        steps, build, solve = steps + 1, build + b, solve + s
        centers = sol or None
    attained = float(d[:, centers].min(1).max()) if centers else float("nan")
    return {"eta_upper": hi, "eta": attained, "centers": centers, "milps": steps, "dist_s": t_dist,
            "build_s": build, "solve_s": solve, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0, "finished": centers is not None}
