"""MCS: how far the proof's set-cover LP is from the integer answer, and whether local cuts close it.

    python benchmarks/perf/mcs_proof_bounds.py                          # digits and MNIST 1,500, k = 10 and 50
    python benchmarks/perf/mcs_proof_bounds.py --cases mnist1500 --ks 10 --cluster-sizes 8 20

The time of a k-MCS proof (``mcs_vs_reference.py``) is one set-cover MILP just below the optimal
radius: "no k centres cover the working set W within r". This runs the solver, keeps that MILP
(reduced, as HiGHS gets it) and reports:

* its LP bound (centres the reductions forced included) against the k + 1 a proof has to reach;
* the LP bound at the same radius over *all* points of the set (is a bigger W a stronger proof?);
* rank inequalities ``s(N(R)) >= tau(R)``: for a group R of rows (a row and the rows its LP
  solution's columns cover most), any cover spends at least R's own cover number ``tau(R)`` on the
  columns covering R (computed exactly by a small MILP). Cuts of this kind are among those a Lagrangian or
  Dantzig-Wolfe bound over clusters of points adds to the LP; the table counts the violated ones
  and the LP after adding them;
* {0, 1/2}-Chvatal-Gomory (zero-half) cuts: half the sum of an odd number of rows R, rounded up,
  ``sum_j ceil(c_j / 2) s_j >= (|R| + 1) / 2`` with ``c_j`` the rows of R column j covers (R grown
  greedily from each row to the most violated odd group); a few rounds of them, the LP after, and
  the proof MILP's time (same HiGHS options as the solver's) with and without them, in one run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from dcrobench_plugins.mcs import setcover, solver

sys.path.insert(0, str(Path(__file__).resolve().parent))


@contextmanager
def capture_proof_milps():
    """Record every set-cover MILP the k-MCS solver hands to HiGHS, with the radius it decides."""
    seen: list[dict] = []
    radius = [None]
    real_milp, real_decide = setcover.solve_milp, solver.KCenterSearch.decide

    def decide(self, r, hint=None):
        radius[0] = r
        return real_decide(self, r, hint)

    def milp(a, **kw):
        res = real_milp(a, **kw)
        seen.append({"a": a.copy(), "r": radius[0], "need": int(kw["cutoff"] + 0.5), "seconds": res.seconds})
        return res

    setcover.solve_milp, solver.KCenterSearch.decide = milp, decide
    try:
        yield seen
    finally:
        setcover.solve_milp, solver.KCenterSearch.decide = real_milp, real_decide


def lp_with_cuts(a: np.ndarray, cuts=()) -> tuple[float, np.ndarray]:
    """LP of the cover model with ``cuts`` (cols, coefficients, rhs): (value, s)."""
    h = setcover.cover_model(a, cuts)
    h.run()
    return float(h.getInfo().objective_function_value), np.asarray(h.getSolution().col_value)


def proof_milp_seconds(a: np.ndarray, need: int, cuts=()) -> tuple[float, bool]:
    """Seconds HiGHS takes to decide "a cover of at most need - 1 columns?" with the solver's
    options (objective cutoff and target need - 0.5), and whether it proved there is none."""
    import highspy

    h = setcover.cover_model(a, cuts)
    cols = a.shape[1]
    h.changeColsIntegrality(cols, np.arange(cols, dtype=np.int32), np.full(cols, highspy.HighsVarType.kInteger))
    for key, value in setcover.milp_options(1, target=need - 0.5, cutoff=need - 0.5).items():
        h.setOptionValue(key, value)
    start = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - start
    info, status = h.getInfo(), h.getModelStatus()
    found = (info.primal_solution_status == highspy.SolutionStatus.kSolutionStatusFeasible
             and info.objective_function_value <= need - 0.5)
    closed = status in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kInfeasible,
                        highspy.HighsModelStatus.kObjectiveBound)
    return seconds, closed and not found


def rank_cuts(a: np.ndarray, s: np.ndarray, size: int, tries: int, tau_limit: float) -> tuple[list, int, float, int]:
    """Violated ``s(N(R)) >= tau(R)`` over groups of ``size`` rows, one group per tried row: the
    row and the rows sharing most LP-weighted columns with it. Returns (cuts, groups tried, largest
    violation, groups whose cover-number MILP did not finish: their cut uses its bound)."""
    af = a.astype(np.float64)
    overlap = (af * s) @ af.T
    starts = np.argsort(-np.diag(overlap), kind="stable")[:tries]
    cuts, groups, worst, unfinished = [], set(), 0.0, 0
    for i in starts:
        group = tuple(sorted(set(np.argsort(-overlap[i], kind="stable")[:size].tolist()) | {int(i)}))
        if group in groups:
            continue
        groups.add(group)
        cols = np.flatnonzero(a[list(group)].any(0))
        lhs = float(s[cols].sum())
        if lhs >= len(group) - 1e-9:  # tau(R) <= |R|: cannot be violated
            continue
        res = setcover.solve_milp(a[list(group)][:, cols], time_limit=tau_limit)
        unfinished += res.status != "optimal"
        tau = math.ceil(res.bound - 1e-6)  # a valid right-hand side even when the MILP stops early
        if lhs < tau - 1e-6:
            cuts.append((cols, np.ones(cols.size), tau))
            worst = max(worst, tau - lhs)
    return cuts, len(groups), worst, unfinished


def zero_half_cuts(a: np.ndarray, s: np.ndarray, *, candidates: int = 80, max_rows: int = 61) -> list:
    """Violated zero-half cuts, at most one per starting row: R grows from the row, adding among
    the ``candidates`` rows sharing most LP-weighted columns with it the one that keeps the cut's
    left side lowest, until an odd R cuts ``s`` off (or ``max_rows``). Cuts: (cols, coefficients, rhs)."""
    af = a.astype(np.float64)
    overlap = (af * s) @ af.T
    cuts, seen = [], set()
    for i in range(a.shape[0]):
        near = [int(j) for j in np.argsort(-overlap[i], kind="stable")[:candidates] if j != i]
        group, count = [i], af[i].copy()
        while True:
            if len(group) % 2 and float(np.ceil(count / 2) @ s) < (len(group) + 1) // 2 - 1e-6:
                key = tuple(sorted(group))
                if key not in seen:
                    seen.add(key)
                    cols = np.flatnonzero(count)
                    cuts.append((cols, np.ceil(count[cols] / 2), (len(group) + 1) // 2))
                break
            near = [j for j in near if j not in group]
            if not near or len(group) >= max_rows:
                break
            lhs = np.ceil((count[None, :] + af[near]) / 2) @ s
            j = near[int(np.argmin(lhs))]
            group.append(j)
            count += af[j]
    return cuts


def run_case(case: str, k: int, sizes: list[int], tries: int, tau_limit: float, zero_half_rounds: int) -> dict:
    from mcs_vs_reference import load_case

    from dcrobench_plugins.mcs.distances import DistanceOracle

    oracle = DistanceOracle(load_case(case), "l2")
    with capture_proof_milps() as milps:
        sol = solver.solve_k_mcs(oracle, k, threads=1)
    if not milps:
        return {"eta": sol.eta, "optimal": sol.optimal, "proof": None}
    proof = max(milps, key=lambda m: m["seconds"])  # the proof is the expensive one
    a, need = proof["a"], proof["need"]
    lp_w, s = lp_with_cuts(a)
    lp_all, all_shape = None, None
    if float(oracle.n) ** 2 <= solver._FULL_MATRIX_ENTRIES:
        full = setcover.reduce(oracle.full() <= proof["r"])
        lp_all = len(full.fixed) + (lp_with_cuts(full.a)[0] if full.a.shape[0] else 0.0)
        all_shape = full.a.shape
    forced = k + 1 - need  # centres the reductions forced before the MILP on W
    cuts = {}
    for size in sizes:
        found, tried, _, unfinished = rank_cuts(a, s, size, tries, tau_limit)
        lp_cut = lp_with_cuts(a, found)[0] if found else lp_w
        cuts[size] = {"violated": len(found), "tried": tried, "unfinished": unfinished, "lp": lp_cut}
    zero_half, lp_zh, s_zh = [], lp_w, s
    for _ in range(zero_half_rounds):
        new = zero_half_cuts(a, s_zh)
        if not new:
            break
        zero_half += new
        lp_zh, s_zh = lp_with_cuts(a, zero_half)
    plain_s, plain_proved = proof_milp_seconds(a, need)
    zh_s, zh_proved = proof_milp_seconds(a, need, zero_half) if zero_half else (plain_s, plain_proved)
    assert plain_proved and zh_proved, "a proof MILP found a cover below the optimum"
    # bounds on the number of centres, forced ones included: a proof needs more than k
    return {"zero_half": len(zero_half), "lp_zero_half": forced + lp_zh, "milp_plain_s": plain_s, "milp_zh_s": zh_s,
            "eta": sol.eta, "optimal": sol.optimal, "proof": proof, "lp_w": forced + lp_w,
            "lp_all": lp_all, "all_shape": all_shape,
            "cuts": {m: dict(c, lp=forced + c["lp"]) for m, c in cuts.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["digits", "mnist1500"])
    ap.add_argument("--ks", nargs="+", type=int, default=[10, 50])
    ap.add_argument("--cluster-sizes", nargs="+", type=int, default=[8, 20, 50])
    ap.add_argument("--tries", type=int, default=40, help="row groups tried per cluster size")
    ap.add_argument("--tau-limit", type=float, default=10.0, help="seconds per group's cover-number MILP")
    ap.add_argument("--zero-half-rounds", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sizes = args.cluster_sizes
    print("bounds count centres, forced ones included: a proof needs a bound above k\n")
    print("| case | k | proof MILP (rows x cols) | MILP s | bound on W (LP) | bound on all points at r (LP) | "
          + " | ".join(f"rank cuts, groups of {m}: violated / tried, bound after" for m in sizes)
          + " | zero-half cuts, bound after | proof MILP s without / with them |")
    print("|---|---|---|---|---|---|" + "---|" * (len(sizes) + 2))
    for case in args.cases:
        for k in args.ks:
            r = run_case(case, k, sizes, args.tries, args.tau_limit, args.zero_half_rounds)
            if r["proof"] is None:
                print(f"| {case} | {k} | no MILP (eta {r['eta']:.5f}, optimal {r['optimal']}) |")
                continue
            shape = r["proof"]["a"].shape
            cells = [case, str(k), f"{shape[0]} x {shape[1]}", f"{r['proof']['seconds']:.1f}", f"{r['lp_w']:.3f}",
                     "-" if r["lp_all"] is None else
                     f"{r['lp_all']:.3f} ({r['all_shape'][0]} x {r['all_shape'][1]} after reductions)"]
            cells += [f"{c['violated']} / {c['tried']}, {c['lp']:.3f}"
                      + (f" ({c['unfinished']} tau unfinished)" if c["unfinished"] else "") for c in r["cuts"].values()]
            cells += [f"{r['zero_half']}, {r['lp_zero_half']:.3f}", f"{r['milp_plain_s']:.1f} / {r['milp_zh_s']:.1f}"]
            print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
