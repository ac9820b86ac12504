"""Row-weighting local search for the k-cover decision: can ``k`` columns cover every row?

The primal engine of k-MCS. It follows RWLS (Gao, Weise & Li, "An efficient local search heuristic
with row weighting for the unicost set covering problem", EJOR 2015), adapted to a fixed number of
columns: keep exactly ``k`` columns; each step removes the chosen column whose loss (weight of the
rows only it covers) is smallest, then adds, for a random uncovered row, the column covering it
with the largest gain (weight of uncovered rows it covers), subject to configuration checking (a
removed column may come back only after a neighbour changed); rows still uncovered gain weight.

Scores are kept incrementally: a step touches only the rows whose cover count crosses 0/1, so it
costs O(changed rows x columns) vectorised work instead of a full ``A^T w`` product.
"""

from __future__ import annotations

import time

import numpy as np


class _State:
    def __init__(self, a: np.ndarray, weights: np.ndarray | None) -> None:
        self.af = np.ascontiguousarray(a, dtype=np.float32)  # [rows, cols]
        self.at = np.ascontiguousarray(self.af.T)  # [cols, rows]: a column is contiguous
        rows, cols = self.af.shape
        self.w = np.ones(rows) if weights is None else np.asarray(weights, dtype=np.float64).copy()
        self.cnt = np.zeros(rows, dtype=np.int32)
        self.owner_sum = np.zeros(rows, dtype=np.int64)  # sum of chosen columns covering a row
        self.chosen: list[int] = []
        self.in_c = np.zeros(cols, dtype=bool)
        self.gain = self.w @ self.af  # weight of uncovered rows each column covers (all uncovered)
        self.loss = np.zeros(cols)  # for chosen columns: weight of rows covered by them only
        self.stamp = np.zeros(cols, dtype=np.int64)
        self.conf = np.ones(cols, dtype=bool)

    def add(self, j: int, t: int) -> None:
        col = self.at[j] > 0
        newly = np.flatnonzero(col & (self.cnt == 0))
        shared = np.flatnonzero(col & (self.cnt == 1))
        if shared.size:  # their single owner no longer covers them alone
            np.subtract.at(self.loss, self.owner_sum[shared], self.w[shared])
        if newly.size:
            self.gain -= self.w[newly] @ self.af[newly]
            self.conf[self.af[newly].any(0)] = True
        self.loss[j] = self.w[newly].sum()
        self.cnt[col] += 1
        self.owner_sum[col] += j
        self.chosen.append(j)
        self.in_c[j] = True
        self.stamp[j] = t

    def remove(self, j: int, t: int) -> None:
        col = self.at[j] > 0
        self.chosen.remove(j)
        self.in_c[j] = False
        self.cnt[col] -= 1
        self.owner_sum[col] -= j
        opened = np.flatnonzero(col & (self.cnt == 0))
        alone = np.flatnonzero(col & (self.cnt == 1))
        if opened.size:
            self.gain += self.w[opened] @ self.af[opened]
            self.conf[self.af[opened].any(0)] = True
        if alone.size:  # with count 1, the owner sum is the owner
            np.add.at(self.loss, self.owner_sum[alone], self.w[alone])
        self.loss[j] = 0.0
        self.conf[j] = False
        self.stamp[j] = t


def cover_search(a: np.ndarray, k: int, start: list[int] | None = None, *, seconds: float = 1.0,
                 max_steps: int | None = None, seed: int = 0,
                 weights: np.ndarray | None = None) -> tuple[list[int] | None, np.ndarray]:
    """Search ``k`` columns of the boolean matrix ``a`` [rows, cols] that cover every row.

    ``start``: columns to begin from (e.g. the last cover found); ``weights``: row weights to
    resume from. Returns (cover as column positions or None, final row weights). Deterministic
    for a given seed and step count (``seconds`` only cuts it short).
    """
    rows, cols = a.shape
    st = _State(a, weights)
    if rows == 0:
        return [], st.w
    if k <= 0 or cols == 0:
        return None, st.w
    rng = np.random.default_rng(seed)
    for j in dict.fromkeys(int(j) for j in (start or [])):
        if 0 <= j < cols and len(st.chosen) < k:
            st.add(j, 0)
    while len(st.chosen) < k and (st.cnt == 0).any():  # fill by best gain
        j = int(np.argmax(np.where(st.in_c, -np.inf, st.gain)))
        st.add(j, 0)
    if not (st.cnt == 0).any():
        return list(st.chosen), st.w
    if len(st.chosen) < k:  # fewer than k distinct useful columns exist
        return None, st.w
    end = time.perf_counter() + float(seconds)
    t = 0
    last = -1
    while max_steps is None or t < max_steps:
        t += 1
        if (t & 15) == 0 and time.perf_counter() > end:
            break
        ch = np.asarray(st.chosen, dtype=np.int64)
        if ch.size > 1:
            ch = ch[ch != last]  # tabu: never drop the column added in the previous step
        loss = st.loss[ch]
        lowest = ch[loss <= loss.min()]
        out = int(lowest[np.argmin(st.stamp[lowest])])
        st.remove(out, t)
        open_rows = np.flatnonzero(st.cnt == 0)
        i = int(open_rows[rng.integers(open_rows.size)])
        cand = np.flatnonzero((st.af[i] > 0) & ~st.in_c)
        ok = cand[st.conf[cand]]
        cand = ok if ok.size else cand
        g = st.gain[cand]
        top = cand[g >= g.max()]
        last = int(top[np.argmin(st.stamp[top])])
        st.add(last, t)
        open_rows = np.flatnonzero(st.cnt == 0)
        if open_rows.size == 0:
            return list(st.chosen), st.w
        st.w[open_rows] += 1.0
        st.gain += st.af[open_rows].sum(0)
    return None, st.w
