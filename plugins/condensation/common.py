"""What DM, GM and TM share: the synthetic-set parameterisation, seeded randomness, the ConvNet,
the cache and the resumable optimisation loop.

Synthetic images are optimised in *normalised* pixel space ``z = (x - mean) / std`` (per-channel
statistics of the training set), as in the original implementations, so the originals' image
learning rates keep their meaning. Images stay in [0, 1] by projection: after every optimiser step
``z`` is clamped into the box ``[(0 - mean) / std, (1 - mean) / std]`` (projected SGD), which is the
pixel range [0, 1]. Initial images are real images of the class (``init: real``, distinct images
drawn with the seed) or Gaussian noise in normalised space projected onto the box (``init: noise``).

Randomness is drawn from ``torch.Generator`` objects derived from (method, seed, iteration), and
networks are built under a forked RNG, so a resumed run replays exactly the random stream of an
uninterrupted one (the optimiser state is checkpointed too).

Cache layout under ``dcrobench.cache.cache_dir("condensation")``:

- ``<method>-<ckpt key>.ckpt.pt``: the latest checkpoint (synthetic images, extra learnable
  tensors, optimiser state, iteration, loss history, elapsed time). The key covers the data
  fingerprint, budget, seed and every parameter that changes the result *except* ``iterations``
  (no method here has an iteration-dependent schedule), so a longer run continues a shorter one;
- ``<method>-<final key>.pt``: the finished synthetic set (``CompressedSet.payload``), keyed by the
  same plus ``iterations``.

Both are sealed with their key (:mod:`dcrobench.cache`) and checked before use; one that fails is
reported and recomputed.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from dcrobench.cache import cache_dir, content_key, read_entry, report_damaged, torch_bytes, torch_entry, write_entry
from dcrobench.errors import BudgetError, MethodError
from dcrobench.imageset import ImageSet
from dcrobench.methods import CompressedSet, CompressionMethod, json_safe, validate_compressed
from dcrobench.progress import bar
from dcrobench_plugins.models import build_convnet

from .dsa import DEFAULT_DSA_PARAMS, DEFAULT_DSA_STRATEGY, DSA

#: a training loss on one (augmented, normalised) minibatch: ``(model, x, y, generator) -> loss``
BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]

#: parameters that do not change the result (excluded from cache keys)
NON_SEMANTIC = ("checkpoint_every", "progress")

COMMON_DEFAULTS: dict[str, Any] = {
    "init": "real",                       # real | noise
    "net_width": 128,                     # the DC ConvNet: depth x [conv3x3, instance norm, ReLU, avgpool]
    "net_depth": 3,
    "net_norm": "instancenorm",
    "dsa_strategy": DEFAULT_DSA_STRATEGY,  # "none" disables DSA
    "dsa_params": dict(DEFAULT_DSA_PARAMS),
    "checkpoint_every": 100,
    "progress": True,
}


def seeded_generator(*parts: Any) -> torch.Generator:
    """A CPU generator seeded by a hash of ``parts`` (independent streams per purpose)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def draw_seed(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=gen))


#: floor of the per-channel std that normalises the condensation nets' inputs
STD_FLOOR = 1e-3


def build_net(ctx: Context, seed: int) -> nn.Module:
    """The DC ConvNet, initialised from ``seed`` (independent of the global RNG and the device)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_convnet(ctx.channels, ctx.size, ctx.num_classes, ctx.mean_list, ctx.std_list,
                            width=int(ctx.params["net_width"]), depth=int(ctx.params["net_depth"]),
                            norm=str(ctx.params["net_norm"]))
    return net.to(ctx.device)


def body(net: nn.Module) -> nn.Sequential:
    """features -> classifier of a ``Classifier``: the network on *normalised* inputs."""
    return nn.Sequential(net.features, net.classifier)


def flat_params(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def downsample(values: list[float], points: int = 50) -> list[float]:
    if len(values) <= points:
        return [float(v) for v in values]
    step = len(values) / points
    return [float(sum(values[int(i * step):int((i + 1) * step)]) / max(1, int((i + 1) * step) - int(i * step)))
            for i in range(points)]


@dataclass
class Context:
    """Everything one condensation run works on (tensors on ``device``)."""

    params: dict[str, Any]
    data: ImageSet
    budget: int
    seed: int
    device: torch.device
    mean_list: list[float]
    std_list: list[float]
    real: torch.Tensor            # normalised real images [N, C, H, W]
    real_labels: torch.Tensor     # [N]
    class_index: list[torch.Tensor]  # CPU indices per class
    z: torch.Tensor               # normalised synthetic images [C * budget, C, H, W], leaf
    syn_labels: torch.Tensor      # [C * budget], class-sorted
    lo: torch.Tensor              # box of [0, 1] in normalised space, [1, C, 1, 1]
    hi: torch.Tensor
    dsa: DSA
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # extra learnable leaves (TM: syn_lr)
    scratch: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def channels(self) -> int:
        return int(self.real.shape[1])

    @property
    def size(self) -> int:
        return int(self.real.shape[2])

    @property
    def mean(self) -> torch.Tensor:
        return torch.tensor(self.mean_list, device=self.device).view(1, -1, 1, 1)

    @property
    def std(self) -> torch.Tensor:
        return torch.tensor(self.std_list, device=self.device).view(1, -1, 1, 1)

    def project_(self) -> None:
        """Keep the synthetic pixels in [0, 1] (clamp into the normalised box)."""
        with torch.no_grad():
            self.z.copy_(torch.minimum(torch.maximum(self.z, self.lo), self.hi))

    def pixels(self) -> torch.Tensor:
        return (self.z.detach() * self.std + self.mean).clamp(0.0, 1.0)

    def sample_real(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``min(batch, class size)`` distinct random images per class: (indices, class of each)."""
        idx, grp = [], []
        for c, ci in enumerate(self.class_index):
            take = torch.randperm(ci.numel(), generator=gen)[:batch]
            idx.append(ci[take])
            grp.append(torch.full((take.numel(),), c, dtype=torch.long))
        return torch.cat(idx), torch.cat(grp)


def merged_dsa(params: dict[str, Any]) -> DSA:
    return DSA(str(params["dsa_strategy"]), dict(params.get("dsa_params") or {}))


class CondensationMethod(CompressionMethod):
    """Shared driver: build the context, resume, iterate ``step``, checkpoint, cache the result."""

    kind = "condensation"
    uses_seed = True
    #: checked in ``compress``: ``init: real`` needs budget <= class size, ``init: noise`` does not
    budget_limited_by_class = False
    method_defaults: ClassVar[dict[str, Any]] = {}

    # ---- to implement -------------------------------------------------------------------
    def setup(self, ctx: Context) -> None:
        """Create optimisers (``ctx.optimizers``) and extra learnable tensors (``ctx.tensors``)."""
        raise NotImplementedError

    def step(self, ctx: Context, it: int) -> float:
        """One iteration; returns its matching loss."""
        raise NotImplementedError

    def extra_key(self, data: ImageSet) -> list[Any]:
        """Extra cache-key parts (e.g. TM's expert-buffer key)."""
        return []

    def extra_meta(self, ctx: Context) -> dict[str, Any]:
        return {}

    def prepare(self, ctx: Context) -> None:
        """Work done before the iterations that is cached separately (TM's experts)."""

    # ---- keys -----------------------------------------------------------------------------
    def semantic_params(self) -> dict[str, Any]:
        p = json_safe(self.params)
        p["dsa_params"] = {**DEFAULT_DSA_PARAMS, **dict(p.get("dsa_params") or {})}
        return {k: v for k, v in p.items() if k not in NON_SEMANTIC}

    def keys(self, data: ImageSet, budget: int, seed: int) -> tuple[str, str]:
        sem = self.semantic_params()
        no_iter = {k: v for k, v in sem.items() if k != "iterations"}
        base = ("condensation", self.name, self.version, data.fingerprint(), data.num_classes, budget, seed)
        ckpt = content_key(*base, no_iter, *self.extra_key(data))
        final = content_key(*base, sem, *self.extra_key(data))
        return ckpt, final

    # ---- driver -----------------------------------------------------------------------------
    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        started = time.perf_counter()
        p = self.params
        if p["init"] not in ("real", "noise"):
            raise MethodError(f"{self.name}: init must be 'real' or 'noise', got {p['init']!r}")
        counts = data.class_counts()
        if min(counts) == 0:
            raise BudgetError(f"{self.name}: class {counts.index(0)} of '{data.name}' has no training images")
        if p["init"] == "real" and budget > min(counts):
            c = counts.index(min(counts))
            raise BudgetError(
                f"budget {budget} images per class is larger than class {c} of '{data.name}' "
                f"({min(counts)} images); '{self.name}' with init: real initialises every synthetic "
                f"image from a distinct real one, so use --budget {min(counts)} or less, or init: noise")
        device = torch.device(device)
        ckpt_key, final_key = self.keys(data, budget, seed)
        root = cache_dir("condensation")
        final_path = root / f"{self.name}-{final_key}.pt"
        if final_path.exists():
            try:
                cached = CompressedSet.from_file_object(io.BytesIO(read_entry(final_path, final_key)), final_path)
                validate_compressed(cached, data.shape, data.num_classes)
                if cached.labels.shape[0] != data.num_classes * budget:
                    raise ValueError(f"it holds {cached.labels.shape[0]} images, not {data.num_classes * budget}")
                cached.meta["cached"] = True
                return cached
            except Exception as exc:  # unreadable, foreign, edited or invalid: recompute
                report_damaged(final_path, exc)
        ckpt_path = root / f"{self.name}-{ckpt_key}.ckpt.pt"

        ctx = self._context(data, budget, seed, device)
        self.prepare(ctx)
        self.setup(ctx)
        iterations = int(p["iterations"])
        start, losses, elapsed_before = 0, [], 0.0
        resumed_from = None
        state = self._load_checkpoint(ckpt_path, ckpt_key)
        if state is not None and int(state["iteration"]) <= iterations:
            self._restore(ctx, state)
            start = int(state["iteration"])
            losses = state["losses"].tolist()
            elapsed_before = float(state["elapsed_s"])
            resumed_from = start
        can_save = state is None or int(state["iteration"]) <= iterations

        every = max(1, int(p["checkpoint_every"]))
        loop_start = time.perf_counter()
        bar = self.progress_bar(total=iterations, initial=start, desc=f"{self.name} seed {seed}")
        try:
            for it in range(start, iterations):
                loss = float(self.step(ctx, it))
                if not torch.isfinite(torch.tensor(loss)):
                    raise MethodError(f"{self.name}: matching loss became {loss} at iteration {it}")
                losses.append(loss)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                done = it + 1
                if can_save and (done % every == 0 or done == iterations):
                    self._save_checkpoint(ckpt_path, ckpt_key, ctx, done, losses,
                                          elapsed_before + time.perf_counter() - started)
        finally:
            bar.close()
        loop_s = time.perf_counter() - loop_start
        total_s = elapsed_before + time.perf_counter() - started

        tail = losses[-max(1, len(losses) // 10):] if losses else []
        meta = {
            "condensation": self.name,
            "condense_loop_s": loop_s,       # this session's optimisation loop
            "iterations": iterations,
            "resumed_from": resumed_from,
            "cached": False,
            "cache_key": final_key,
            "init": p["init"],
            "pixel_constraint": "projected SGD: clamp to [0,1] (in normalised space) after every step",
            "loss_initial": float(losses[0]) if losses else None,
            "loss_final": float(sum(tail) / len(tail)) if tail else None,
            "loss_curve": downsample(losses),
        }
        meta.update(self.extra_meta(ctx))
        images = ctx.pixels().cpu()
        # total condensation time, all resumed sessions
        result = CompressedSet(images=images, labels=ctx.syn_labels.cpu(), meta=meta, own_seconds=total_s)
        write_entry(final_path, final_key, torch_bytes(result.payload()))
        return result

    # ---- helpers ------------------------------------------------------------------------------
    def progress_bar(self, *, total: int, initial: int, desc: str):
        """A bar drawn as ``run`` was told (``self.progress``: True, False, None = only on a
        terminal), and never when the method's ``progress`` parameter is false."""
        return bar(total=total, initial=initial, desc=desc, dynamic_ncols=True, mininterval=1.0,
                   enabled=self.progress if self.params["progress"] else False)

    def _context(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> Context:
        p = self.params
        mean, std = data.channel_stats(floor=STD_FLOOR)
        mean_t = torch.tensor(mean).view(1, -1, 1, 1)
        std_t = torch.tensor(std).view(1, -1, 1, 1)
        images = data.images.detach().float().cpu()
        real = ((images - mean_t) / std_t).to(device)
        class_index = [data.class_indices(c).cpu() for c in range(data.num_classes)]
        gen = seeded_generator(self.name, seed, "init")
        c, h, w = images.shape[1:]
        if p["init"] == "real":
            chosen = torch.cat([ci[torch.randperm(ci.numel(), generator=gen)[:budget]] for ci in class_index])
            z0 = (images[chosen] - mean_t) / std_t
        else:
            z0 = torch.randn((data.num_classes * budget, c, h, w), generator=gen)
        lo, hi = (0.0 - mean_t) / std_t, (1.0 - mean_t) / std_t
        z = z0.to(device).clone().requires_grad_(True)
        ctx = Context(
            params=p, data=data, budget=budget, seed=seed, device=device, mean_list=mean, std_list=std,
            real=real, real_labels=data.labels.to(device), class_index=class_index, z=z,
            syn_labels=torch.arange(data.num_classes, device=device).repeat_interleave(budget),
            lo=lo.to(device), hi=hi.to(device), dsa=merged_dsa(p),
        )
        ctx.project_()
        return ctx

    @staticmethod
    def _load_checkpoint(path: Path, key: str) -> dict[str, Any] | None:
        if not path.exists():
            return None
        try:
            state = torch_entry(path, key)
            if not isinstance(state.get("z"), torch.Tensor) or not torch.isfinite(state["z"]).all():
                raise ValueError("its synthetic images are not finite")
            if isinstance(state.get("iteration"), bool) or not isinstance(state.get("iteration"), int) \
                    or state["iteration"] < 0:
                raise ValueError("its iteration is not a non-negative integer")
            return state
        except Exception as exc:  # noqa: BLE001 - truncated / foreign / edited checkpoint: start over
            report_damaged(path, exc)
            return None

    @staticmethod
    def _save_checkpoint(path: Path, key: str, ctx: Context, iteration: int, losses: list[float],
                         elapsed: float) -> None:
        write_entry(path, key, torch_bytes({
            "iteration": iteration,
            "z": ctx.z.detach().cpu(),
            "tensors": {k: v.detach().cpu() for k, v in ctx.tensors.items()},
            "optimizers": {k: o.state_dict() for k, o in ctx.optimizers.items()},
            "losses": torch.tensor(losses, dtype=torch.float64),
            "elapsed_s": float(elapsed),
        }))

    @staticmethod
    def _restore(ctx: Context, state: dict[str, Any]) -> None:
        with torch.no_grad():
            ctx.z.copy_(state["z"].to(ctx.device))
            for k, v in state["tensors"].items():
                ctx.tensors[k].copy_(v.to(ctx.device))
        for k, sd in state["optimizers"].items():
            ctx.optimizers[k].load_state_dict(sd)


def sgd_step(ctx: Context, loss: torch.Tensor, names: tuple[str, ...] = ("img",)) -> None:
    """Back-propagate ``loss`` into the synthetic set and step the named optimisers; project."""
    leaves = [prm for n in names for g in ctx.optimizers[n].param_groups for prm in g["params"]]
    grads = torch.autograd.grad(loss, leaves)  # only w.r.t. the learnable leaves (not network weights)
    for prm, g in zip(leaves, grads):
        prm.grad = g
    for n in names:
        ctx.optimizers[n].step()
        ctx.optimizers[n].zero_grad(set_to_none=True)
    ctx.project_()


def train_epoch(ctx: Context, model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batch: int, gen: torch.Generator, *, loss_fn: BatchLoss | None = None,
                after_step: Callable[[], None] | None = None) -> float:
    """One epoch of SGD on normalised inputs ``x`` with DSA (a fresh transformation per batch,
    one parameter set per image: the originals' non-siamese ``seed=-1`` use).

    ``loss_fn(model, xb, yb, gen)`` replaces the cross-entropy (MAT's adversarial loss, GUARD's
    curvature-regularised one); ``after_step`` runs after every optimiser step (MAT's EMA)."""
    # The networks of GM's inner loop and TM's experts train here, not in dcrobench.train.train (the
    # protocol's loop), which cannot run them without changing every condensed set and expert
    # buffer: the order and a DSA transformation of every minibatch come from the caller's
    # generator (GM threads one stream through a whole iteration, TM seeds one per expert epoch),
    # while train seeds its own generator and the global RNG and has no augmentation; it is one
    # epoch at a time, so TM stores the trajectory after each and resumes mid-expert with the
    # momentum buffer; the network stays in train mode (train ends in eval mode); the loss is
    # cross-entropy's own mean and the epoch's loss a sum of Python floats (train: the mean of
    # per-sample losses, summed on the device), which round differently.
    n = x.shape[0]
    perm = torch.randperm(n, generator=gen).to(x.device)
    total = 0.0
    crit = nn.CrossEntropyLoss()
    for s in range(0, n, batch):
        idx = perm[s:s + batch]
        xb, yb = x[idx], y[idx]
        if ctx.dsa.enabled:
            prm = ctx.dsa.sample(xb.shape[0], tuple(xb.shape[2:]), gen, shared_family=True)
            xb = ctx.dsa(xb, prm)
        loss = crit(model(xb), yb) if loss_fn is None else loss_fn(model, xb, yb, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()
        total += float(loss.detach()) * idx.numel()
    return total / max(1, n)
