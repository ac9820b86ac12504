"""Geometric coreset selection in a proxy model's embedding space: Herding, k-Center greedy and the
SubMod graph-cut / facility-location functions.

All four select per class (exact per-class budgets) from the penultimate-layer embeddings of a proxy
model trained on the full training set (``dcrobench_plugins.coresets.proxy``; its settings come from the protocol's
``proxy:`` block, so they are part of the recorded protocol).

* ``herding`` -- greedy herding as used by iCaRL (Rebuffi et al. 2017) and DeepCore (Guo et al.
  2022), after Welling (2009) / Chen et al. (2010): starting from the empty set, repeatedly add the
  not-yet-chosen point that brings the running mean of the chosen embeddings closest (Euclidean) to
  the class mean.  (DeepCore's ``herding.py`` takes ``argmax`` of that distance, i.e. the point that
  moves the mean *farthest*; we follow the definition, ``argmin``.)
* ``kcenter`` -- greedy farthest-first traversal (Gonzalez 1985), the k-Center-Greedy of Sener &
  Savarese (2018): repeatedly add the point farthest from its nearest chosen center.  It is a
  2-approximation of the minimax (k-center) radius.  The first center is a seeded random point of
  the class (``init: random``, as DeepCore's ``k_center_greedy``) or the point closest to the class
  mean (``init: mean``).
* ``submod-gc`` -- graph cut, submodlib's definition (Iyer et al. 2021)
  ``f(S) = sum_{i in V, j in S} s_ij - lam * sum_{i, j in S} s_ij``, maximised by lazy greedy.
  DeepCore's ``GraphCut`` (default ``lam = 1``) is ``lam' * sum_{V,S} s - sum_{S,S} s``, i.e. the same
  function up to the factor ``lam'`` with ``lam = 1 / lam'``; the default here is therefore 1.0.
  For ``lam > 0.5`` the function is non-monotone but still submodular, so lazy greedy is exact
  (it returns plain greedy's set); greedy always adds exactly ``budget`` points.
* ``submod-fl`` -- facility location ``f(S) = sum_{i in V} max_{j in S} s_ij`` by lazy greedy
  (``dcrobench_plugins.coresets.submodular.facility_location_lazy_greedy``).

Graph cut and facility location both run ``dcrobench_plugins.coresets.submodular.lazy_greedy``.

Similarity for both SubMod functions is DeepCore's ``cossim``: ``s_ij = 0.5 + 0.5 cos(x_i, x_j)``,
in [0, 1] (non-negative, as facility location and graph cut need).  ``features: embedding`` (the
default, issue #4) uses the proxy's penultimate embeddings; ``features: gradient`` uses the
per-sample gradient of the cross-entropy w.r.t. the last linear layer (bias and weight), which is
what DeepCore's ``Submodular`` class uses.

Nothing here forms a dense ``n x n`` matrix except facility location (which needs every
similarity); the other methods compute distances / similarities against the whole class one
center or one block at a time.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from dcrobench.errors import MethodError
from dcrobench.hookspecs import hookimpl
from dcrobench.imageset import ImageSet
from dcrobench.methods import CompressedSet, select_per_class
from dcrobench.progress import bar
from dcrobench_plugins.coresets.proxy import embeddings, gradients_from_factors, logit_residuals
from dcrobench_plugins.coresets.proxy_selection import ProxySelection

from .submodular import facility_location_lazy_greedy, facility_location_value, lazy_greedy

BLOCK = 4096  # rows per block when a class's pairwise quantities are reduced block by block


# ------------------------------------------------------------------------------------------------
# Pure algorithms on an embedding matrix x [n, d] (any device / dtype)
# ------------------------------------------------------------------------------------------------
def herding_select(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy herding: ``k`` distinct row indices, in selection order, and the distance
    ``||mean(x[chosen[:t]]) - mean(x)||`` after each step t = 1..k (a [k] tensor)."""
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"herding needs 1 <= k <= n, got k={k}, n={n}")
    mu = x.mean(0)
    sq = (x * x).sum(1)
    total = torch.zeros_like(mu)
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    order = torch.empty(k, dtype=torch.long, device=x.device)
    dist = torch.empty(k, dtype=x.dtype, device=x.device)
    for t in range(k):
        # new mean = (total + x_p) / (t + 1); minimise ||(t + 1) mu - total - x_p||^2 over p
        target = (t + 1) * mu - total
        score = sq - 2.0 * (x @ target)
        score[taken] = math.inf
        p = int(torch.argmin(score))
        order[t] = p
        taken[p] = True
        total = total + x[p]
        dist[t] = torch.linalg.vector_norm(total / (t + 1) - mu)
    return order, dist


def kcenter_select(x: torch.Tensor, k: int, start: int) -> tuple[torch.Tensor, float]:
    """Farthest-first traversal of the rows of ``x`` (Euclidean) from row ``start``: ``k`` distinct
    indices (selection order) and the covering radius ``max_i min_{c in centers} ||x_i - x_c||``."""
    return farthest_first(x.shape[0], k, start, lambda p: torch.linalg.vector_norm(x - x[p], dim=1))


def farthest_first(n: int, k: int, start: int, distance_to: Callable[[int], torch.Tensor]
                   ) -> tuple[torch.Tensor, float]:
    """Gonzalez's farthest-first traversal under any dissimilarity: ``distance_to(p)`` is the
    ``[n]`` vector of dissimilarities from point ``p`` to every point. Returns ``k`` distinct
    indices (selection order) and ``max_i min_{c in centers} d(i, c)``.

    Keeps one vector of each point's dissimilarity to its nearest center, updated in O(n d) per step.
    """
    if not 1 <= k <= n:
        raise ValueError(f"k-center needs 1 <= k <= n, got k={k}, n={n}")
    mind = distance_to(start).clone()
    order = torch.empty(k, dtype=torch.long, device=mind.device)
    order[0] = start
    mind[start] = 0.0
    for t in range(1, k):
        p = int(torch.argmax(mind))
        if float(mind[p]) <= 0.0:  # every remaining point duplicates a center: take unchosen ones
            chosen = torch.zeros(n, dtype=torch.bool, device=mind.device)
            chosen[order[:t]] = True
            p = int(torch.nonzero(~chosen)[0])
        order[t] = p
        mind = torch.minimum(mind, distance_to(p))
        mind[p] = 0.0
    return order, float(mind.max())


def covering_radius(x: torch.Tensor, centers: torch.Tensor) -> float:
    """``max_i min_{c} ||x_i - x_c||`` (block-wise over the rows)."""
    worst = 0.0
    xc = x[centers]
    for lo in range(0, x.shape[0], BLOCK):
        d = torch.cdist(x[lo:lo + BLOCK], xc)
        worst = max(worst, float(d.min(1).values.max()))
    return worst


def cosine_features(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit norm (zero rows stay zero, i.e. cosine 0 with everything)."""
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)


def cossim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DeepCore's shifted cosine similarity 0.5 + 0.5 cos(a_i, b_j), for unit-norm rows."""
    return 0.5 + 0.5 * (a @ b.T)


def similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """Dense ``[n, n]`` shifted-cosine similarities of the rows of ``x``."""
    u = cosine_features(x)
    return cossim(u, u)


def graph_cut_value(sim: torch.Tensor, selected: torch.Tensor, lam: float) -> float:
    """submodlib's graph cut f(S) = sum_{i in V, j in S} s_ij - lam sum_{i, j in S} s_ij."""
    s = selected.long()
    return float(sim[:, s].sum() - lam * sim[s][:, s].sum())


class _GraphCut:
    """Graph-cut gains over unit-norm features u with s = 0.5 + 0.5 u u^T, without an n x n matrix.

    gain(x | S) = colsum_x - lam (2 sum_{j in S} s_xj + s_xx).
    """

    def __init__(self, u: torch.Tensor, lam: float) -> None:
        self.u, self.lam = u, float(lam)
        n = u.shape[0]
        # colsum_x = sum_i s_ix = 0.5 n + 0.5 u_x . sum_i u_i  (exact algebra; no blocks needed),
        # but computed block-wise from the similarities themselves to stay valid for any kernel.
        col = torch.zeros(n, dtype=u.dtype, device=u.device)
        for lo in range(0, n, BLOCK):
            col += cossim(u[lo:lo + BLOCK], u).sum(0)
        self.colsum = col
        self.diag = 0.5 + 0.5 * (u * u).sum(1)

    def gains(self, cand: torch.Tensor, selected: list[int]) -> torch.Tensor:
        """Exact marginal gains of the candidate rows ``cand`` given the chosen rows."""
        if selected:
            inter = cossim(self.u[cand], self.u[torch.tensor(selected, device=self.u.device)]).sum(1)
        else:
            inter = torch.zeros(cand.shape[0], dtype=self.u.dtype, device=self.u.device)
        return self.colsum[cand] - self.lam * (2.0 * inter + self.diag[cand])


def graph_cut_greedy(x: torch.Tensor, k: int, lam: float) -> tuple[torch.Tensor, float]:
    """Plain greedy graph cut (every gain recomputed every step, vectorized over all candidates).
    Returns the chosen rows in order and f(S) (the sum of the greedy gains)."""
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"graph cut needs 1 <= k <= n, got k={k}, n={n}")
    gc = _GraphCut(cosine_features(x), lam)
    inter = torch.zeros(n, dtype=x.dtype, device=x.device)  # sum_{j in S} s_xj, for every x
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    order, value = [], 0.0
    for _ in range(k):
        g = gc.colsum - gc.lam * (2.0 * inter + gc.diag)
        g[taken] = -math.inf
        p = int(torch.argmax(g))
        value += float(g[p])
        order.append(p)
        taken[p] = True
        inter += cossim(gc.u, gc.u[p:p + 1]).squeeze(1)
    return torch.tensor(order, dtype=torch.long), value


def graph_cut_lazy_greedy(x: torch.Tensor, k: int, lam: float, batch: int = 32,
                          progress: Callable[[], None] | None = None) -> tuple[torch.Tensor, float, int]:
    """Lazy greedy graph cut (``submodular.lazy_greedy``, ``batch`` stale gains refreshed per oracle
    call) over shifted-cosine similarities of the rows of x; ``progress()`` is called per pick.
    Returns (rows in order, f(S), number of gain evaluations)."""
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"graph cut needs 1 <= k <= n, got k={k}, n={n}")
    gc = _GraphCut(cosine_features(x), lam)

    def oracle(cand: torch.Tensor, chosen: list[int]) -> torch.Tensor:
        return gc.gains(cand.to(x.device), chosen)

    order, gains, evals = lazy_greedy(n, k, oracle, batch=batch, on_pick=progress)
    value = 0.0  # f(S) - f(empty), summed in pick order
    for g in gains:
        value += g
    return torch.tensor(order, dtype=torch.long), value, evals


# ------------------------------------------------------------------------------------------------
# Methods
# ------------------------------------------------------------------------------------------------
class _EmbeddingSelection(ProxySelection):
    """Per-class selection in the proxy's embedding space: embed the training set with the proxy,
    then ``_select_class`` picks each class's rows."""

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        settings = self.proxy_settings()
        model = self.trained_proxy(data, settings, seed, device)
        emb = embeddings(model, data.images, device).to(device).float()
        gen = torch.Generator().manual_seed(seed)
        chosen: dict[int, torch.Tensor] = {}
        per_class: list[dict[str, Any]] = []
        points = bar(total=data.num_classes * budget, desc=f"{self.name}: selecting", unit="pt", mininterval=0.5,
                     enabled=self.progress)
        try:
            for c in range(data.num_classes):
                idx = data.class_indices(c)
                if idx.numel() == 0:
                    continue
                points.set_postfix_str(f"class {c}")
                rows, info = self._select_class(model, emb[idx.to(emb.device)], data.labels[idx], budget, gen,
                                                lambda: points.update(1))
                rows = rows.cpu()
                if rows.numel() != budget or rows.unique().numel() != budget:
                    raise MethodError(f"{self.name} chose {rows.numel()} rows ({rows.unique().numel()} distinct) "
                                      f"for class {c}, expected {budget}")
                chosen[c] = idx[rows]
                per_class.append({"class": c, **info})
        finally:
            points.close()
        meta = {**self.proxy_meta(settings), "embedding_dim": int(emb.shape[1]), "per_class": per_class,
                **self._meta()}
        return select_per_class(data, chosen, None, meta)

    def _meta(self) -> dict[str, Any]:
        return {}

    def _select_class(self, model, x: torch.Tensor, labels: torch.Tensor, k: int, gen: torch.Generator,
                      tick: Callable[[], None]) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError


class Herding(_EmbeddingSelection):
    name = "herding"
    description = ("greedy herding (Welling 2009; Chen et al. 2010; as in iCaRL/DeepCore): per class, add the point "
                   "bringing the running mean of proxy embeddings closest to the class mean")
    default_params = {"proxy": None}

    def _select_class(self, model, x, labels, k, gen, tick):
        order, dist = herding_select(x, k)
        for _ in range(k):
            tick()
        return order, {"mean_distance": float(dist[-1]), "class_size": int(x.shape[0])}


class KCenter(_EmbeddingSelection):
    name = "kcenter"
    description = ("k-Center greedy (Sener & Savarese 2018): per class, farthest-first traversal of proxy embeddings "
                   "(a 2-approximation of the minimax cover)")
    default_params = {"proxy": None, "init": "random"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["init"] not in ("random", "mean"):
            raise MethodError(f"kcenter: init must be 'random' (seeded random first center, as DeepCore) or 'mean' "
                              f"(the point closest to the class mean), got {self.params['init']!r}")

    def _select_class(self, model, x, labels, k, gen, tick):
        if self.params["init"] == "random":
            start = int(torch.randint(x.shape[0], (1,), generator=gen))
        else:
            start = int(torch.argmin(torch.linalg.vector_norm(x - x.mean(0), dim=1)))
        order, radius = kcenter_select(x, k, start)
        for _ in range(k):
            tick()
        return order, {"radius": radius, "start": start, "class_size": int(x.shape[0])}


class _SubmodularSelection(_EmbeddingSelection):
    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["features"] not in ("embedding", "gradient"):
            raise MethodError(f"{self.name}: features must be 'embedding' (proxy penultimate embeddings) or "
                              f"'gradient' (last-layer gradients, as DeepCore), got {self.params['features']!r}")

    def _features(self, model, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.params["features"] == "gradient":
            return gradients_from_factors(x, logit_residuals(model, x, labels))
        return x

    def _meta(self) -> dict[str, Any]:
        return {"similarity": "0.5 + 0.5 * cosine (DeepCore cossim)", "features": self.params["features"]}


class SubmodGraphCut(_SubmodularSelection):
    name = "submod-gc"
    description = ("SubMod graph cut (Iyer et al. 2021; submodlib): per class, lazy greedy on "
                   "sum_{V,S} s - lam sum_{S,S} s over shifted-cosine similarities of proxy features")
    default_params = {"proxy": None, "lam": 1.0, "features": "embedding"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        lam = self.params["lam"]
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not math.isfinite(lam) or lam < 0:
            raise MethodError(f"submod-gc: lam must be a finite number >= 0, got {lam!r}")

    def _select_class(self, model, x, labels, k, gen, tick):
        feats = self._features(model, x, labels)
        order, value, evals = graph_cut_lazy_greedy(feats, k, float(self.params["lam"]), progress=tick)
        return order, {"objective": value, "gain_evaluations": evals, "class_size": int(x.shape[0])}


class SubmodFacilityLocation(_SubmodularSelection):
    name = "submod-fl"
    description = ("SubMod facility location (Iyer et al. 2021): per class, lazy greedy on sum_i max_{j in S} s_ij "
                   "over shifted-cosine similarities of proxy features")
    default_params = {"proxy": None, "features": "embedding"}

    def _select_class(self, model, x, labels, k, gen, tick):
        feats = self._features(model, x, labels)
        sim = similarity_matrix(feats)
        order, _gains = facility_location_lazy_greedy(sim, k)
        for _ in range(k):
            tick()
        value = facility_location_value(sim, order.to(sim.device))
        return order, {"objective": value, "class_size": int(x.shape[0])}


@hookimpl
def register_methods():
    return [Herding, KCenter, SubmodGraphCut, SubmodFacilityLocation]
