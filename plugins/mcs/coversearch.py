"""Row-weighting local search for the k-cover decision: can ``k`` columns cover every row?

The primal engine of k-MCS. It follows RWLS (Gao, Weise & Li, "An efficient local search heuristic
with row weighting for the unicost set covering problem", EJOR 2015), adapted to a fixed number of
columns: keep exactly ``k`` columns; each step removes the chosen column whose loss (weight of the
rows only it covers) is smallest, then adds, for a random uncovered row, the column covering it
with the largest gain (weight of uncovered rows it covers), subject to configuration checking (a
removed column may come back only after a neighbour changed); rows still uncovered gain weight.

Scores are kept incrementally on sparse row and column lists: a step touches only the rows of the
two columns swapped and their neighbours, a few microseconds compiled with numba (a step of the
vectorised numpy version it replaces cost 0.1-0.5 ms).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np

#: steps run inside one compiled call between checks of the clock
_CHUNK = 4096


@nb.njit(cache=True)
def _csr(a):
    """Row lists of the boolean matrix ``a``: (pointers, column indices)."""
    rows, cols = a.shape
    ptr = np.zeros(rows + 1, dtype=np.int64)
    for i in range(rows):
        c = 0
        for j in range(cols):
            if a[i, j]:
                c += 1
        ptr[i + 1] = ptr[i] + c
    idx = np.empty(ptr[rows], dtype=np.int64)
    for i in range(rows):
        p = ptr[i]
        for j in range(cols):
            if a[i, j]:
                idx[p] = j
                p += 1
    return ptr, idx


@nb.njit(cache=True)
def _add(j, t, rptr, ridx, cptr, cidx, w, cnt, owner, gain, loss, conf, stamp, in_c, chosen, cpos,
         unc, upos, sizes):
    loss[j] = 0.0
    for p in range(cptr[j], cptr[j + 1]):
        i = cidx[p]
        c = cnt[i]
        if c == 0:
            wi = w[i]
            for q in range(rptr[i], rptr[i + 1]):
                c2 = ridx[q]
                gain[c2] -= wi
                conf[c2] = True
            loss[j] += wi
            u = upos[i]  # row i leaves the uncovered list
            last = unc[sizes[1] - 1]
            unc[u] = last
            upos[last] = u
            upos[i] = -1
            sizes[1] -= 1
        elif c == 1:
            loss[owner[i]] -= w[i]  # its single owner no longer covers it alone
        cnt[i] = c + 1
        owner[i] += j  # with one owner, the sum of owners is the owner
    chosen[sizes[0]] = j
    cpos[j] = sizes[0]
    sizes[0] += 1
    in_c[j] = True
    stamp[j] = t


@nb.njit(cache=True)
def _remove(j, t, rptr, ridx, cptr, cidx, w, cnt, owner, gain, loss, conf, stamp, in_c, chosen, cpos,
            unc, upos, sizes):
    u = cpos[j]
    last = chosen[sizes[0] - 1]
    chosen[u] = last
    cpos[last] = u
    cpos[j] = -1
    sizes[0] -= 1
    in_c[j] = False
    for p in range(cptr[j], cptr[j + 1]):
        i = cidx[p]
        c = cnt[i] - 1
        cnt[i] = c
        owner[i] -= j
        if c == 0:
            wi = w[i]
            for q in range(rptr[i], rptr[i + 1]):
                c2 = ridx[q]
                gain[c2] += wi
                conf[c2] = True
            upos[i] = sizes[1]
            unc[sizes[1]] = i
            sizes[1] += 1
        elif c == 1:
            loss[owner[i]] += w[i]
    loss[j] = 0.0
    conf[j] = False
    stamp[j] = t


@nb.njit(cache=True, nogil=True)
def _steps(n_steps, t, last, rng, rptr, ridx, cptr, cidx, w, cnt, owner, gain, loss, conf, stamp, in_c,
           chosen, cpos, unc, upos, sizes):
    """Run up to ``n_steps`` swaps; returns (step counter, column added last, covered?)."""
    for _ in range(n_steps):
        t += 1
        out = -1
        for q in range(sizes[0]):  # drop: least loss, oldest first; never the column just added
            c = chosen[q]
            if c == last and sizes[0] > 1:
                continue
            if out < 0 or loss[c] < loss[out] or (loss[c] == loss[out] and stamp[c] < stamp[out]):
                out = c
        _remove(out, t, rptr, ridx, cptr, cidx, w, cnt, owner, gain, loss, conf, stamp, in_c, chosen, cpos,
                unc, upos, sizes)
        x = rng[0]  # xorshift64
        x ^= (x << np.uint64(13))
        x ^= (x >> np.uint64(7))
        x ^= (x << np.uint64(17))
        rng[0] = x
        i = unc[np.int64(x % np.uint64(sizes[1]))]
        pick = -1
        pick_conf = False
        for q in range(rptr[i], rptr[i + 1]):  # add: best gain for row i, configuration checked
            c = ridx[q]
            if in_c[c]:
                continue
            better = False
            if pick < 0:
                better = True
            elif conf[c] != pick_conf:
                better = conf[c]
            elif gain[c] > gain[pick] or (gain[c] == gain[pick] and stamp[c] < stamp[pick]):
                better = True
            if better:
                pick = c
                pick_conf = conf[c]
        _add(pick, t, rptr, ridx, cptr, cidx, w, cnt, owner, gain, loss, conf, stamp, in_c, chosen, cpos,
             unc, upos, sizes)
        last = pick
        if sizes[1] == 0:
            return t, last, True
        for u in range(sizes[1]):
            i = unc[u]
            w[i] += 1.0
            for q in range(rptr[i], rptr[i + 1]):
                gain[ridx[q]] += 1.0
    return t, last, False


def _lists(a: np.ndarray, symmetric: bool = False) -> tuple:
    """(row pointers, row lists, column pointers, column lists) of the boolean matrix ``a``."""
    a = np.ascontiguousarray(a, dtype=np.bool_)
    rptr, ridx = _csr(a)
    cptr, cidx = (rptr, ridx) if symmetric else _csr(np.ascontiguousarray(a.T))
    return rptr, ridx, cptr, cidx


class _State:
    """Search state over the boolean matrix ``a`` [rows, cols] (row and column lists)."""

    def __init__(self, a: np.ndarray, weights: np.ndarray | None, k: int | None = None, seed: int = 0,
                 lists: tuple | None = None) -> None:
        rows, cols = a.shape
        self.rptr, self.ridx, self.cptr, self.cidx = _lists(a) if lists is None else lists
        self.w = np.ones(rows) if weights is None else np.asarray(weights, dtype=np.float64).copy()
        self.cnt = np.zeros(rows, dtype=np.int64)
        self.owner_sum = np.zeros(rows, dtype=np.int64)  # sum of chosen columns covering a row
        self.in_c = np.zeros(cols, dtype=np.bool_)
        # weight of uncovered rows each column covers (all rows are uncovered)
        self.gain = np.bincount(self.ridx, weights=np.repeat(self.w, np.diff(self.rptr)), minlength=cols)
        self.loss = np.zeros(cols)  # for chosen columns: weight of rows covered by them only
        self.stamp = np.zeros(cols, dtype=np.int64)
        self.conf = np.ones(cols, dtype=np.bool_)
        self.chosen_arr = np.zeros(cols if k is None else min(cols, k), dtype=np.int64)
        self.cpos = np.full(cols, -1, dtype=np.int64)
        self.unc = np.arange(rows, dtype=np.int64)
        self.upos = np.arange(rows, dtype=np.int64)
        self.sizes = np.array([0, rows], dtype=np.int64)  # chosen, uncovered
        self.t, self.last = 0, -1  # step counter, column added last
        self.rng = np.array([(seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) % 2**64 or 1], dtype=np.uint64)

    def _lists(self):
        return (self.rptr, self.ridx, self.cptr, self.cidx, self.w, self.cnt, self.owner_sum, self.gain,
                self.loss, self.conf, self.stamp, self.in_c, self.chosen_arr, self.cpos, self.unc, self.upos,
                self.sizes)

    @property
    def chosen(self) -> list[int]:
        return [int(c) for c in self.chosen_arr[: self.sizes[0]]]

    @property
    def uncovered(self) -> int:
        return int(self.sizes[1])

    def add(self, j: int, t: int) -> None:
        _add(j, t, *self._lists())

    def remove(self, j: int, t: int) -> None:
        _remove(j, t, *self._lists())

    def run(self, n_steps: int) -> bool:
        """``n_steps`` swaps of the search from the current columns (exactly k of them);
        True when every row is covered."""
        self.t, self.last, covered = _steps(n_steps, self.t, self.last, self.rng, *self._lists())
        return bool(covered)


def cover_search(a: np.ndarray, k: int, start: list[int] | None = None, *, seconds: float = 1.0,
                 max_steps: int | None = None, seed: int = 0, weights: np.ndarray | None = None,
                 symmetric: bool = False, workers: int = 1) -> tuple[list[int] | None, np.ndarray]:
    """Search ``k`` columns of the boolean matrix ``a`` [rows, cols] that cover every row.

    ``start``: columns to begin from (default: a greedy fill by gain); ``weights``: row weights to
    resume from; ``symmetric``: ``a`` equals its transpose (skips building the column lists);
    ``workers``: independent searches (seeds ``seed``, ``seed`` + 1, ...) run side by side in
    threads, in lockstep chunks of steps, and the lowest-numbered one to cover wins; so the result
    is deterministic for a given seed, step count and worker count (``seconds`` only cuts it
    short). ``max_steps`` counts each worker's steps. Returns (cover as column positions or None,
    final row weights of the winning or first worker).
    """
    rows, cols = a.shape
    if rows == 0:
        return [], np.ones(0) if weights is None else np.asarray(weights, dtype=np.float64).copy()
    lists = _lists(a, symmetric)
    states = [_State(a, weights, k, seed + i, lists) for i in range(max(1, int(workers)))]
    st = states[0]
    if k <= 0 or cols == 0 or (np.diff(st.rptr) == 0).any():  # a row no column covers
        return None, st.w
    for s in states:
        for j in dict.fromkeys(int(j) for j in (start or [])):
            if 0 <= j < cols and s.sizes[0] < k and not s.in_c[j]:
                s.add(j, 0)
        while s.sizes[0] < k and s.uncovered:  # fill by best gain
            s.add(int(np.argmax(np.where(s.in_c, -np.inf, s.gain))), 0)
    if not st.uncovered:
        return st.chosen, st.w
    if st.sizes[0] < k:  # fewer than k distinct useful columns exist
        return None, st.w
    end = time.perf_counter() + float(seconds)
    done = 0
    pool = ThreadPoolExecutor(len(states)) if len(states) > 1 else None
    try:
        while max_steps is None or done < max_steps:
            n = _CHUNK if max_steps is None else min(_CHUNK, max_steps - done)
            covered = [st.run(n)] if pool is None else list(pool.map(_State.run, states, [n] * len(states)))
            done += n
            for s, ok in zip(states, covered):
                if ok:
                    return s.chosen, s.w
            if time.perf_counter() > end:
                break
    finally:
        if pool is not None:
            pool.shutdown()
    return None, st.w
