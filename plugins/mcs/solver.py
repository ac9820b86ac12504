"""Exact minimal coresets (paper §5, Theorem 1): k-MCS (vertex k-center) and eta-MCS (set cover).

Both are solved by *row generation* over the paper's set-cover MILP: only a working set ``W`` of
points must be covered (columns = every point of the class as a candidate centre), the MILP on
``W`` is small after reductions, and the points the resulting cover leaves uncovered are added to
``W``. The optimum over ``W`` is a valid bound for the whole class (covering fewer points is
easier), so the loop is exact; it stops as soon as a cover of ``W`` also covers everything.

k-MCS searches the optimal radius among the *attained* distances ``D[W, :]`` (the optimum is the
distance of some point to its centre) between a certified lower bound and the radius of the best
cover found so far (greedy farthest-first to start, then every cover found), by bisection; a
decision at radius ``r`` is proved infeasible on ``W`` (packing bound or MILP) or found feasible
(greedy set cover or MILP), and then checked on all points.

Phases of ``solve_k_mcs``: (1) primal descent with the row-weighting local search of
``coversearch`` on the whole matrix (or on W when the class is too large for it); (2) cheap-bound
bisection (reductions, packing bound, LP relaxation with LP row generation; no MILP) that raises
the certified lower bound; (3) MILP decisions (HiGHS with sub-MIP heuristics and strong branching
off, objective cutoff k + 0.5 so infeasible radii are pruned by bound), the first just below the
incumbent, then bisection. Under a time limit, classes too large for a proof in time keep the
local search going instead, and with ``rel_gap`` > 0 spend the last part of the time on one MILP
just below ``(1 - rel_gap)`` times the incumbent, which certifies that gap when it succeeds.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from . import coversearch, setcover
from .distances import DistanceOracle

SOLVER_VERSION = "mcs-rowgen-10"
_log = logging.getLogger(__name__)


@dataclass
class McsSolution:
    centers: list[int]  # local indices (into the class's points), sorted
    eta: float  # covering radius of ``centers`` over all points (attained)
    lower_bound: float  # certified: k-MCS -> optimal radius >= this; eta-MCS -> minimal size >= this
    optimal: bool
    mode: str  # "k" | "eta"
    k: int | None = None
    radius: float | None = None
    size_lower_bound: int | None = None  # eta-MCS only
    solves: int = 0  # MILP solves
    decisions: int = 0  # radius tests (k-MCS)
    working_set: int = 0  # |W| at the end
    greedy_eta: float | None = None
    seconds: float = 0.0
    status: str = "optimal"
    extra: dict = field(default_factory=dict)

    @property
    def gap(self) -> float:
        if self.mode == "k":
            return 0.0 if self.eta <= 0 else max(0.0, (self.eta - self.lower_bound) / self.eta)
        n = len(self.centers)
        return 0.0 if n == 0 else max(0.0, (n - (self.size_lower_bound or 0)) / n)

    def to_json(self) -> dict:
        d = asdict(self)
        d["gap"] = self.gap
        return d

    @classmethod
    def from_json(cls, d: dict) -> McsSolution:
        d = {k: v for k, v in d.items() if k != "gap"}
        return cls(**d)


class _Covering:
    """Incremental state: working set rows of D and per-centre distance columns."""

    def __init__(self, oracle: DistanceOracle, full: np.ndarray | None = None) -> None:
        self.o = oracle
        self.n = oracle.n
        self.full = full  # the whole (symmetric) distance matrix, when it is small enough
        self.w: list[int] = []
        self.w_pos = np.full(self.n, -1, dtype=np.int64)
        self.dw = np.zeros((0, self.n))
        self.col_cache: dict[int, np.ndarray] = {}

    def add_rows(self, pts) -> None:
        pts = [int(p) for p in pts if self.w_pos[int(p)] < 0]
        pts = list(dict.fromkeys(pts))
        if not pts:
            return
        rows = self.full[pts] if self.full is not None else self.o.rows(pts)
        # one value per (point, centre) pair: distances already used through a column win
        for j, col in self.col_cache.items():
            rows[:, j] = col[pts]
        self.w_pos[pts] = np.arange(len(self.w), len(self.w) + len(pts))
        self.w.extend(pts)
        self.dw = np.vstack([self.dw, rows])

    def column(self, j: int) -> np.ndarray:
        """d(., j) for all points; points of W use their W-row values (one source of truth)."""
        if self.full is not None:
            return self.full[j]  # symmetric: row j is column j
        col = self.col_cache.get(j)
        if col is None:
            col = self.o.rows([j])[0]
            if self.w:
                col[np.asarray(self.w, dtype=np.int64)] = self.dw[:, j]
            self.col_cache[j] = col
        return col

    def assign(self, centers) -> tuple[np.ndarray, np.ndarray]:
        """(distance to nearest centre, position of that centre in ``centers``) for all points."""
        cols = np.stack([self.column(int(c)) for c in centers], axis=1)
        for t, c in enumerate(centers):  # a centre is assigned to itself
            cols[int(c), t] = -1.0
        pos = np.argmin(cols, axis=1)
        dist = cols[np.arange(self.n), pos]
        dist[dist < 0] = 0.0
        return dist, pos


def farthest_first(cov: _Covering, k: int | None = None, radius: float | None = None,
                   start: int | None = None) -> tuple[list[int], np.ndarray]:
    """Gonzalez's greedy: k centres (or until every point is within ``radius``)."""
    o = cov.o
    if start is None:
        mean = o.x.mean(0, keepdim=True)
        from .distances import pairwise

        start = int(np.argmin(pairwise(mean, o.x, o.metric)[0]))
    centers = [start]
    mind = cov.column(start).copy()
    mind[start] = 0.0
    while True:
        far = int(np.argmax(mind))
        if (k is not None and len(centers) >= k) or mind[far] <= (radius if radius is not None else -1.0):
            break
        if mind[far] <= 0:
            break
        centers.append(far)
        col = cov.column(far)
        np.minimum(mind, col, out=mind)
        mind[far] = 0.0
    return centers, mind


def _pick_new_rows(dist: np.ndarray, pos: np.ndarray, r: float, limit: int) -> list[int]:
    """Uncovered points to add: the farthest one per centre, then the globally farthest, <= limit."""
    unc = np.flatnonzero(dist > r)
    if unc.size == 0:
        return []
    picks: list[int] = []
    order = unc[np.argsort(-dist[unc], kind="stable")]
    seen_centre: set[int] = set()
    for p in order:
        c = int(pos[p])
        if c not in seen_centre:
            seen_centre.add(c)
            picks.append(int(p))
            if len(picks) >= limit:
                return picks
    for p in order:
        if len(picks) >= limit:
            break
        if int(p) not in picks:
            picks.append(int(p))
    return picks


class _Deadline:
    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.perf_counter() + float(seconds)

    def left(self) -> float | None:
        return None if self.end is None else self.end - time.perf_counter()

    def over(self) -> bool:
        return self.end is not None and time.perf_counter() >= self.end


@dataclass
class MilpStats:
    """What the MILP solves of a search cost (both searches report them)."""

    solves: int = 0
    rounds: int = 0  # row-generation rounds
    milp_s: float = 0.0
    max_milp_shape: tuple[int, int] = (0, 0)

    def note_milp(self, res: setcover.MilpResult, shape: tuple[int, int]) -> None:
        self.solves += 1
        self.milp_s += res.seconds
        self.max_milp_shape = max(self.max_milp_shape, tuple(shape))

    def to_extra(self) -> dict:
        """The solution's ``extra``: every counter (tuples as lists), the trace only when it has points."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "trace" and not v:
                continue
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass
class KSearchStats(MilpStats):
    """Counters of one k-MCS search: how each radius decision was settled, and where the time went."""

    decisions: int = 0
    by_greedy: int = 0
    by_packing: int = 0
    by_reduction: int = 0
    by_local_search: int = 0
    by_lp: int = 0
    lp_s: float = 0.0
    lp_tests: int = 0
    lp_solves: int = 0
    ls_tries: int = 0
    ls_found: int = 0
    primal_s: float = 0.0
    #: (seconds, incumbent radius, certified bound) whenever either changes
    trace: list = field(default_factory=list)


#: under a time limit, classes larger than this skip the MILP proofs and keep the local search
#: going: a 591 x 4,592 proof MILP (mnist5k, k = 50) did not finish in 14 s, while 1,500-point
#: proofs (~350 x 1,300) take 10-20 s
_MILP_MAX_POINTS = 3000

#: share of the time limit kept for the bound-raising MILP when proofs are skipped
_GAP_PROOF_SHARE = 0.3

#: relative bracket at which the LP bisection stops
_LP_BRACKET = 5e-4

#: relative bracket above which the exact phase bisects instead of testing just below the incumbent
_BISECT_ABOVE = 0.02

#: the phases stop this share of the time limit (at most _WRAP_UP_MAX_S) early: the work under way
#: at the deadline still has to end (a cover's new distance columns, the last LP's model building:
#: runs ended 0.2-0.5 s past a 30 s limit on the 13,861 x 3,072 SVHN-sized stand-in without it)
_WRAP_UP_SHARE = 0.01
_WRAP_UP_MAX_S = 2.0


#: the primal search and the bounds keep the whole distance matrix up to this many entries
_FULL_MATRIX_ENTRIES = 40_000_000  # 320 MB of float64, n <= 6,324


class KCenterSearch:
    """The state of one k-MCS search and one method per phase (see :func:`solve_k_mcs`).

    ``best``/``ub``: the incumbent centres and their radius (an attained distance); ``lb``: the
    certified lower bound; ``cov``: the working set W and the distance columns used so far.
    """

    def __init__(self, oracle: DistanceOracle, k: int, *, time_limit: float | None, rel_gap: float, threads: int,
                 add_per_round: int | None, primal_share: float, try_steps: int | None) -> None:
        self.t0 = time.perf_counter()
        self.k, self.rel_gap, self.threads, self.primal_share = k, rel_gap, threads, primal_share
        self.time_limit = time_limit
        self.deadline = _Deadline(None if time_limit is None else
                                  time_limit - min(_WRAP_UP_SHARE * time_limit, _WRAP_UP_MAX_S))
        self.n = n = oracle.n
        full = oracle.full() if float(n) * n <= _FULL_MATRIX_ENTRIES else None
        self.cov = _Covering(oracle, full)
        centers, mind = farthest_first(self.cov, k=k)
        self.best = list(centers)
        self.ub = float(mind.max())
        self.greedy_eta = self.ub
        self.cov.add_rows(centers + [int(np.argmax(mind))])
        self.lb = 0.0
        self.stats = KSearchStats()
        self.limit = add_per_round or max(10, k)  # rows added to W per round
        self.status = "optimal"
        self.row_weight = np.ones(n)  # per point: how hard the local searches found it
        # a failed try costs all of it: ~0.1 s at n = 400, ~1 s at 1,500, ~2 s at 5,000 (one core)
        self.try_steps = int(min(200_000, 1_000 + 100 * n)) if try_steps is None else try_steps

    # ---- phase 1 and between the phases: the primal descent ------------------------------------
    def descend(self, steps: int | None = None, **kw) -> float:
        """One primal descent (``primal_search``) on its share of the time left; W then gets the best
        centres and the rows the search found hardest. Returns the step to resume from."""
        start = time.perf_counter()
        left = self.deadline.left()  # each descent may use primal_share of the time left
        budget = None if left is None else max(0.0, self.primal_share * left)
        steps = max(1_000, self.try_steps // 4) if steps is None else steps
        step = self.primal_search(budget, steps, **kw)
        hard = np.argsort(-self.row_weight, kind="stable")[: min(self.n, max(100, 6 * self.k))]
        self.cov.add_rows(list(self.best) + [int(p) for p in hard])
        self.stats.primal_s += time.perf_counter() - start
        return step

    def primal_search(self, budget_s: float | None, try_steps: int, *, lb: float = 0.0, step: float = 0.005,
                      max_failures: int | None = None) -> float:
        """Lower the covering radius with the row-weighting local search (``coversearch``).

        Targets ``ub * (1 - step)``: a success moves ``ub`` to the radius found and widens the step, a
        failure within ``try_steps`` steps halves it, and so does a target below the certified bound
        ``lb`` (no cover exists there: no try). Stops below a relative step of 1e-3 (the exact phase's
        searches take over), after ``max_failures`` failed tries, or when the budget is spent.
        Returns the step to resume from.
        """
        t_end = None if budget_s is None else time.perf_counter() + budget_s
        failures = 0
        while step >= 1e-3 and self.ub > 0 and not self.deadline.over():
            if max_failures is not None and failures >= max_failures:
                break
            target = self.ub * (1.0 - step)
            if target < lb:
                step *= 0.5
                continue
            left = [1e9]
            if t_end is not None:
                left.append(t_end - time.perf_counter())
            if self.deadline.left() is not None:
                left.append(self.deadline.left())
            if min(left) <= 0:
                break
            found = self.search_cover(target, try_steps, min(left))
            self.trace(lb)
            if found:
                step = min(1.5 * step, 0.05)
            else:
                failures += 1
                step *= 0.5
        return step

    def search_cover(self, target: float, steps: int, seconds: float | None) -> bool:
        """Row-weighting local search for k centres covering every point within ``target``.

        Runs on the whole matrix when it is kept, else on W with row generation, each try from a fresh
        greedy fill (restarting from the incumbent was measured to trap it: MNIST 1,500, k = 10, a
        target 1% above the optimum failed in 150,000 steps from the incumbent, and took under 100
        from a fresh fill). ``steps`` bounds each search (so results do not depend on the machine's
        speed); ``seconds`` only enforces the caller's time limit; ``threads`` searches run in
        parallel. A better cover becomes the incumbent; returns whether ``target`` was reached.
        """
        cov, stats = self.cov, self.stats
        end = time.perf_counter() + (1e9 if seconds is None else seconds)
        while True:
            secs = end - time.perf_counter()
            if secs <= 0:
                return False
            if cov.full is not None:
                rows = np.arange(cov.n)
                a = cov.full <= target
            else:
                rows = np.asarray(cov.w, dtype=np.int64)
                a = cov.dw <= target
            stats.ls_tries += 1
            cols, w = coversearch.cover_search(a, self.k, None, seconds=secs, seed=self.threads * stats.ls_tries,
                                               max_steps=steps, symmetric=cov.full is not None, workers=self.threads)
            self.row_weight[rows] += w  # hardness record only: every search starts from unit weights
            if cols is None:
                return False
            dist, pos = cov.assign(cols)
            rho = float(dist.max())
            self.improve(cols, dist, rho)
            if rho <= target:
                stats.ls_found += 1
                return True
            cov.add_rows(_pick_new_rows(dist, pos, target, self.limit))

    def improve(self, cols, dist: np.ndarray, rho: float) -> None:
        """A cover of radius ``rho`` replaces the incumbent when it is better; its farthest point joins W,
        so the incumbent radius stays an attained W-distance."""
        if rho < self.ub:
            self.ub, self.best = rho, sorted(int(c) for c in cols)
            self.cov.add_rows([int(np.argmax(dist))])

    def trace(self, lb: float | None = None) -> None:
        lb = self.lb if lb is None else lb
        tr = self.stats.trace
        if not tr or tr[-1][1] != self.ub or tr[-1][2] != lb:
            tr.append([round(time.perf_counter() - self.t0, 3), self.ub, lb])

    # ---- phase 2: cheap bounds ------------------------------------------------------------------
    def raise_bound_cheaply(self) -> None:
        """Bisection over the attained W-distances using only reductions, the packing bound and the LP
        relaxation (no MILP): raises the certified lower bound fast."""
        cov = self.cov
        lp_hi = self.ub
        # stop once the bracket is within _LP_BRACKET: the last LP steps gain little and cost most
        # (mnist5k, k = 50: 12 of 30 s for the last 6e-5 of the bound)
        while self.lb < lp_hi and lp_hi - self.lb > _LP_BRACKET * lp_hi and not self.deadline.over():
            vals = cov.dw[(cov.dw >= self.lb) & (cov.dw < lp_hi)]
            if vals.size == 0:
                break
            cand = np.unique(vals)
            r = float(cand[cand.size // 2])
            self.stats.lp_tests += 1
            if self.cheap_infeasible(r):
                # the W-problem's radius is an attained W-distance above r (W may have grown)
                above = cov.dw[cov.dw > r]
                self.lb = max(self.lb, float(above.min()) if above.size else lp_hi)
                self.trace()
            else:
                lp_hi = r

    def cheap_infeasible(self, r: float, rounds: int = 12) -> bool:
        """True when reductions, the packing bound or the LP relaxation prove: no k centres cover
        every point within r (False = not proved).

        The LP is solved on the working set and then checked against *all* points through its
        support columns; points it covers less than once join W and the LP is solved again (LP row
        generation), so the bound approaches the full LP's without building it. Stops (False) when
        the deadline passes.
        """
        cov, k, stats = self.cov, self.k, self.stats
        for _ in range(rounds):
            if self.deadline.over():
                return False
            a = cov.dw <= r
            cheap = float(a.shape[0]) * a.shape[1] * a.shape[1] <= 1e9
            red = setcover.reduce(a, dominance=cheap)  # full dominance measured useless here (mnist5k:
            # 4,557 of 4,557 distinct columns non-dominated at W=622) and ~0.2 s a call
            if red.infeasible or len(red.fixed) > k:
                return True
            kr = k - len(red.fixed)
            if red.a.shape[0] == 0 and not red.fixed:
                return False
            if red.a.shape[0] and (kr == 0 or setcover.packing_bound(red.a) > kr):
                return True
            t = time.perf_counter()
            lp, x = setcover.lp_solution(red.a, self.deadline.left()) if red.a.shape[0] else (0.0, np.zeros(0))
            stats.lp_s += time.perf_counter() - t
            stats.lp_solves += 1
            if lp > kr + 1e-5:
                return True
            if self.deadline.over():  # the LP may have been stopped: no rows to add from it
                return False
            used = np.flatnonzero(x > 1e-9)
            cols = [int(c) for c in red.cols[used]] + [int(c) for c in red.fixed]
            vals = np.concatenate([x[used], np.ones(len(red.fixed))])
            frac = (np.stack([cov.column(c) for c in cols], axis=1) <= r) @ vals if cols else np.zeros(cov.n)
            short = np.flatnonzero(frac < 1.0 - 1e-6)
            short = short[cov.w_pos[short] < 0]
            if short.size == 0:
                return False  # the LP on W is the LP on all points
            cov.add_rows(short[np.argsort(frac[short], kind="stable")][:self.limit])
        return False

    # ---- phase 3: exact -------------------------------------------------------------------------
    def prove(self) -> None:
        """The incumbent is usually optimal by now, so test the largest attained W-distance below it
        (one proof settles it); a cover found there lowers the incumbent to its radius. Proofs just
        below the optimum are the expensive ones, and bisection would pay for several of them; it is
        used only while the bracket is wide."""
        cov, rel_gap, stats = self.cov, self.rel_gap, self.stats
        ls_steps = self.try_steps
        milp_proofs = self.time_limit is None or self.n <= _MILP_MAX_POINTS
        # without proofs, the last part of the time is kept for one bound-raising MILP (rel_gap > 0)
        reserve = _GAP_PROOF_SHARE * self.time_limit if not milp_proofs and rel_gap > 0 else 0.0
        while self.lb < self.ub:
            lb, ub = self.lb, self.ub
            if rel_gap > 0 and (ub - lb) <= rel_gap * ub:
                self.status = "gap"
                break
            vals = cov.dw[(cov.dw >= lb) & (cov.dw < ub * (1.0 - rel_gap))] if rel_gap > 0 else \
                cov.dw[(cov.dw >= lb) & (cov.dw < ub)]
            if vals.size == 0:  # the W-optimum, an attained W-distance >= lb, is at least the next one
                above = cov.dw[cov.dw >= lb]
                self.lb = min(ub, float(above.min())) if above.size else ub
                self.status = "gap" if self.lb < ub else self.status
                break
            cand = np.unique(vals)
            if ub - lb <= _BISECT_ABOVE * ub:
                r = float(cand[-1])
            else:
                # bisection by value, snapped to an attained W-distance (the optimum is one of them)
                mid = 0.5 * (lb + ub)
                r = float(cand[min(int(np.searchsorted(cand, mid)), cand.size - 1)])
            if r == float(cand[-1]) or not milp_proofs:
                # a better cover is far cheaper to find by local search than by the MILP, which is
                # kept for the proof. The search aims just below the incumbent: on MNIST 1,500 it found
                # such covers in 0.02-0.3 s, while every try at ub * (1 - 2e-3) failed and cost a whole
                # try (1.5-1.8 s at k = 10); without proofs, it also lowers the incumbent further in the
                # same time (mnist5k, k = 50)
                below = cov.dw[(cov.dw >= lb) & (cov.dw < ub)]
                target = float(below.max()) if below.size else r
                if not milp_proofs:
                    r = target
                left = self.deadline.left()
                secs = None if left is None else max(0.0, left - reserve)
                found = self.search_cover(target, ls_steps, secs)
                self.trace()
                if found:
                    continue
                if not milp_proofs:  # search longer instead of a MILP that cannot finish in time
                    if self.deadline.over():
                        self.status = "time_limit"
                        break
                    if reserve and self.deadline.left() <= reserve:
                        # the reserved time goes to one MILP just below ub * (1 - rel_gap): raising
                        # the bound a little above the LP's is cheap where a proof at ub is not
                        # (mnist5k, k = 50: 6.5 s at 0.99 ub, unfinished in 120 s at 0.992 ub)
                        reserve = 0.0
                        gap_r = cov.dw[(cov.dw >= self.lb) & (cov.dw < self.ub * (1.0 - rel_gap))]
                        if gap_r.size:
                            stats.decisions += 1
                            self.attempt(float(gap_r.max()), list(self.best))
                            self.trace(min(self.lb, self.ub))
                        continue
                    ls_steps = min(16 * self.try_steps, 2 * ls_steps)
                    continue
            stats.decisions += 1
            old_ub = self.ub
            decided = self.attempt(r, list(self.best))
            self.trace(min(self.lb, self.ub))
            if decided is True and self.ub < old_ub:
                ls_steps = min(4 * self.try_steps, 2 * ls_steps)  # the local search missed a cover: give it longer
            if decided is None:
                self.status = "time_limit"
                break

    def attempt(self, r: float, hint: list[int]) -> bool | None:
        """Decide radius r with row generation: True (ub <= r now) | False (lb > r) | None (out of time)."""
        cov = self.cov
        while True:
            if self.deadline.over():
                return None
            ok, cols = self.decide(r, hint)
            if ok is None:
                return None
            if not ok:
                # the W-problem needs a radius above r: the next attained W-distance is a bound
                above = cov.dw[cov.dw > r]
                self.lb = max(self.lb, float(above.min()) if above.size else self.ub)
                return False
            dist, pos = cov.assign(cols)
            hint = list(cols)
            rho = float(dist.max())
            self.improve(cols, dist, rho)
            if rho <= r:
                return True
            self.stats.rounds += 1
            cov.add_rows(_pick_new_rows(dist, pos, r, self.limit))

    def decide(self, r: float, hint: list[int] | None = None):
        """Can the rows of W be covered by <= k centres within r? -> (True, cols) | (False, None) | (None, None)."""
        dw, k, stats = self.cov.dw, self.k, self.stats
        a = dw <= r
        # cheap reductions for the heuristics; dominance (costly on wide W) only before a MILP
        cheap = float(a.shape[0]) * a.shape[1] * a.shape[1] <= 1e9
        red = setcover.reduce(a, dominance=cheap)
        if red.infeasible:  # impossible: every point covers itself; kept for safety
            return False, None
        kr = k - len(red.fixed)
        if kr < 0:
            stats.by_reduction += 1
            return False, None
        if red.a.shape[0] == 0:
            return True, list(red.fixed)
        g = setcover.greedy_cover(red.a, limit=kr)
        if g is not None:
            stats.by_greedy += 1
            return True, list(red.fixed) + [int(red.cols[j]) for j in g]
        if kr == 0 or setcover.packing_bound(red.a) > kr:
            stats.by_packing += 1
            return False, None
        if hint:
            pos = {int(cj): t for t, cj in enumerate(red.cols)}
            start = [pos[h] for h in hint if h in pos]
            ls, _ = coversearch.cover_search(red.a, kr, start, seconds=5.0, max_steps=20_000)
            if ls is not None:
                stats.by_local_search += 1
                return True, list(red.fixed) + [int(red.cols[j]) for j in ls]
        if self.deadline.over():
            return None, None
        sub = setcover.reduce(red.a, red.cols, dominance=not cheap)
        if sub.infeasible or len(sub.fixed) > kr:
            stats.by_reduction += 1
            return False, None
        red = setcover.Reduced(sub.a, sub.cols, list(red.fixed) + sub.fixed)
        kr = k - len(red.fixed)
        if sub.a.shape[0] == 0:
            return True, list(red.fixed)
        # LP relaxation (~0.05 s on a few hundred rows): LP > kr proves the radius too small
        t_lp = time.perf_counter()
        lp = setcover.lp_solution(red.a, self.deadline.left())[0]
        stats.lp_s += time.perf_counter() - t_lp
        if lp > kr + 1e-5:
            stats.by_lp += 1
            return False, None
        # min |cover| stopped at the first cover of size <= kr (objective target): finds covers far
        # more easily than the sum(s) <= k feasibility form; infeasible <=> dual bound > kr
        if self.deadline.over():
            return None, None
        res = setcover.solve_milp(red.a, time_limit=self.deadline.left(), target=kr + 0.5, cutoff=kr + 0.5,
                                  threads=self.threads)
        stats.note_milp(res, red.a.shape)
        _log.debug("k-decision r=%.6f W=%d reduced=%s fixed=%d -> %s in %.2fs", r, dw.shape[0],
                   red.a.shape, len(red.fixed), res.status, res.seconds)
        if res.chosen and len(res.chosen) <= kr:
            return True, list(red.fixed) + [int(red.cols[j]) for j in res.chosen]
        if res.status in ("infeasible", "optimal") or res.bound > kr + 1e-6:
            return False, None
        return None, None

    # ---- the answer -----------------------------------------------------------------------------
    def solution(self) -> McsSolution:
        """Exactly k centres (padded with farthest-first points, which cannot increase the radius)."""
        lb = min(self.lb, self.ub)
        optimal = lb >= self.ub
        status = "optimal" if optimal else self.status
        best = _pad(self.cov, self.best, self.k)
        dist, _ = self.cov.assign(best)
        eta = float(dist.max())
        return McsSolution(sorted(best), eta, float(lb), bool(optimal and eta <= self.ub), "k", k=self.k,
                           solves=self.stats.solves, decisions=self.stats.decisions, working_set=len(self.cov.w),
                           greedy_eta=self.greedy_eta, seconds=time.perf_counter() - self.t0, status=status,
                           extra=self.stats.to_extra())


def solve_k_mcs(oracle: DistanceOracle, k: int, *, time_limit: float | None = None, rel_gap: float = 0.0,
                threads: int = 1, add_per_round: int | None = None, primal_share: float = 0.4,
                try_steps: int | None = None) -> McsSolution:
    """Minimum covering radius with k centres chosen among the points (exact unless time runs out).

    Phases (:class:`KCenterSearch`): (1) primal: Gonzalez's greedy, then the row-weighting local
    search lowers the radius; (2) cheap bounds: bisection with reductions, the packing bound and the
    LP relaxation (with LP row generation) raises the certified lower bound; then a second descent
    above that bound; (3) exact: MILP decisions with row generation, the first one just below the
    incumbent (usually optimal by then), then bisection. ``threads``: local searches run side by
    side, and the MILPs run that many HiGHS threads.
    """
    t0 = time.perf_counter()
    n = oracle.n
    if k >= n:
        return McsSolution(list(range(n)), 0.0, 0.0, True, "k", k=k, seconds=time.perf_counter() - t0)
    search = KCenterSearch(oracle, k, time_limit=time_limit, rel_gap=rel_gap, threads=threads,
                           add_per_round=add_per_round, primal_share=primal_share, try_steps=try_steps)
    # descend until the first failures (short tries: a failure spends a whole try; covers are found
    # within a few thousand steps when the target is not close to the optimum), bound, then descend
    # again above the bound; the exact phase's searches are longer
    step = search.descend(max_failures=3)
    search.raise_bound_cheaply()
    search.descend(lb=search.lb, step=step)
    search.lb = min(search.lb, search.ub)
    search.prove()
    return search.solution()


def _pad(cov: _Covering, centers: list[int], k: int) -> list[int]:
    centers = list(dict.fromkeys(int(c) for c in centers))
    if len(centers) >= k:
        return centers[:k] if len(centers) > k else centers
    dist, _ = cov.assign(centers)
    dist = dist.copy()
    dist[centers] = -1.0
    while len(centers) < k:
        far = int(np.argmax(dist))
        centers.append(far)
        np.minimum(dist, cov.column(far), out=dist)
        dist[centers] = -1.0
    return centers


def solve_eta_mcs(oracle: DistanceOracle, radius: float, *, time_limit: float | None = None,
                  add_per_round: int = 50, threads: int = 1) -> McsSolution:
    """Fewest centres (chosen among the points) covering every point within ``radius``
    (``threads``: HiGHS threads of its MILPs)."""
    radius_in = float(radius)
    t0 = time.perf_counter()
    deadline = _Deadline(time_limit)
    # a radius given as a distance should cover that pair whatever the last-bit rounding
    radius = float(radius) * (1.0 + 1e-12) + 1e-15
    cov = _Covering(oracle)
    centers, mind = farthest_first(cov, radius=radius)
    best = sorted(centers)
    greedy_eta = float(mind.max())
    cov.add_rows(centers)
    size_lb = 1
    stats = MilpStats()
    status = "optimal"
    while size_lb < len(best):
        if deadline.over():
            status = "time_limit"
            break
        stats.rounds += 1
        a = cov.dw <= radius
        red = setcover.reduce(a)
        cols: list[int] | None
        if red.a.shape[0] == 0:
            cols, bound = list(red.fixed), float(len(red.fixed))
        else:
            res = setcover.solve_milp(red.a, time_limit=deadline.left(), threads=threads)
            stats.note_milp(res, red.a.shape)
            bound = len(red.fixed) + res.bound
            cols = None if not res.chosen else list(red.fixed) + [int(red.cols[j]) for j in res.chosen]
            if res.status != "optimal":
                status = "time_limit"
        size_lb = max(size_lb, math.ceil(bound - 1e-6))
        if cols is None:
            break
        dist, pos = cov.assign(cols)
        unc = np.flatnonzero(dist > radius)
        if unc.size == 0:
            if len(cols) < len(best):
                best = sorted(cols)
            if status != "optimal":
                break
            continue
        # complete the W-cover greedily (farthest-first on the uncovered points) for an upper bound
        full = list(cols)
        d2 = dist.copy()
        while d2.max() > radius:
            far = int(np.argmax(d2))
            full.append(far)
            np.minimum(d2, cov.column(far), out=d2)
            d2[far] = 0.0
        if len(full) < len(best):
            best = sorted(full)
        if status != "optimal":
            break
        cov.add_rows(_pick_new_rows(dist, pos, radius, add_per_round))
    dist, _ = cov.assign(best)
    optimal = size_lb >= len(best)
    if optimal:
        status = "optimal"
    return McsSolution(best, float(dist.max()), float(size_lb), bool(optimal), "eta", radius=float(radius_in),
                       size_lower_bound=int(size_lb), solves=stats.solves, working_set=len(cov.w),
                       greedy_eta=greedy_eta, seconds=time.perf_counter() - t0, status=status,
                       extra=stats.to_extra())


def assign_weights(oracle: DistanceOracle, centers: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Def. 5 weights: each point goes to its nearest chosen centre; q = count (sums to n).

    Returns (weights aligned with ``centers``, distance of every point to its centre).
    """
    cov = _Covering(oracle)
    dist, pos = cov.assign(centers)
    q = np.bincount(pos, minlength=len(centers)).astype(np.float64)
    return q, dist
