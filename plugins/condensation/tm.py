"""TM: dataset distillation by matching training trajectories (MTT; Cazenavette et al., CVPR 2022).

Stage 1, experts (cached, resumable per expert and epoch): ``num_experts`` ConvNets trained on
the full training set with SGD (``lr_teacher``, ``expert_momentum``, ``expert_weight_decay``,
batch ``expert_batch``, DSA), their flat parameters stored after every epoch (epoch 0 = the
initialisation). As in MTT, one expert buffer serves every distillation seed: expert ``i`` is
seeded by ``i``, and the buffer is keyed by data fingerprint and expert settings only.

Stage 2, distillation: every iteration picks a random expert and a start epoch
``t ~ U{0, ..., max_start_epoch - 1}``, runs ``syn_steps`` differentiable SGD steps of a student
(functional ConvNet on the flat parameter vector, ``torch.func.functional_call``) from
``theta*_t`` on synthetic mini-batches (``batch_syn``, with DSA) with the *learnable* step size
``syn_lr`` (initialised to ``lr_teacher``), and minimises the normalised parameter distance

    || theta_N - theta*_{t+M} ||^2 / || theta*_t - theta*_{t+M} ||^2,     M = expert_epochs

w.r.t. the synthetic images (SGD lr_img, momentum 0.5) and ``syn_lr`` (SGD lr_lr, momentum 0.5).

Defaults follow MTT's CIFAR-10 IPC-50 row (syn_steps 30, expert_epochs 2, max_start_epoch 40,
lr_lr 1e-5, lr_teacher 0.01, 5,000 iterations, 100 experts x 50 epochs) with lr_img 1000 (MTT's
value without ZCA whitening, which this benchmark does not use).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dcrobench.cache import cache_dir, content_key, read_entry, report_damaged, torch_bytes, torch_entry, write_entry
from dcrobench.errors import MethodError

from .common import (
    COMMON_DEFAULTS,
    BatchLoss,
    CondensationMethod,
    Context,
    body,
    build_net,
    draw_seed,
    flat_params,
    seeded_generator,
    sgd_step,
    train_epoch,
)
from .dsa import DSA


class FlatModel:
    """A module evaluated at a flat parameter vector (``functional_call``)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.sizes = [p.numel() for _, p in model.named_parameters()]
        self.num_params = sum(self.sizes)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, torch.split(flat, self.sizes), self.shapes)}

    def __call__(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.unflatten(flat), (x,))


def student_rollout(student: FlatModel, start: torch.Tensor, z: torch.Tensor, labels: torch.Tensor,
                    syn_lr: torch.Tensor, syn_steps: int, batch_syn: int, dsa: DSA,
                    gen: torch.Generator) -> torch.Tensor:
    """``syn_steps`` differentiable SGD steps from ``start`` on the synthetic set; returns the
    final flat parameters (a function of ``z`` and ``syn_lr``)."""
    # A loop of its own, not dcrobench.train.train nor common.train_epoch: its steps are unrolled
    # and differentiable (w - syn_lr * grad with create_graph=True on a flat parameter vector), so
    # the matching loss back-propagates through all of them into the images and the learnable
    # step size, which no torch.optim step (in place, outside autograd) allows.
    w = start.detach().clone().requires_grad_(True)
    chunks: list[torch.Tensor] = []
    for _ in range(syn_steps):
        if not chunks:
            chunks = list(torch.split(torch.randperm(z.shape[0], generator=gen), batch_syn))
        idx = chunks.pop().to(z.device)
        x, y = z[idx], labels[idx]
        if dsa.enabled:  # non-siamese: a fresh transformation per step, per image
            x = dsa(x, dsa.sample(x.shape[0], tuple(x.shape[2:]), gen, shared_family=True))
        ce = F.cross_entropy(student(w, x), y)
        g = torch.autograd.grad(ce, w, create_graph=True)[0]
        w = w - syn_lr * g
    return w


def normalized_distance(end: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((end - target) ** 2).sum() / ((start - target) ** 2).sum().clamp_min(1e-12)


class ParameterEMA:
    """An exponential moving average of a model's flat parameters, updated after every step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model, self.decay = model, float(decay)
        self.params = flat_params(model).clone()

    def update(self) -> None:
        self.params.mul_(self.decay).add_(flat_params(self.model), alpha=1.0 - self.decay)


class ExpertBuffer:
    """Expert trajectories on disk: ``<dir>/expert_<i>/epoch_<e>.pt`` = {"params": flat, ...}."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, expert: int, epoch: int) -> Path:
        return self.root / f"expert_{expert:04d}" / f"epoch_{epoch:04d}.pt"

    def key(self, expert: int, epoch: int) -> str:
        """What an epoch file's seal must name (:mod:`dcrobench.cache`): this buffer, expert and epoch."""
        return f"{self.root.name}/expert_{expert:04d}/epoch_{epoch:04d}"

    def epochs_done(self, expert: int) -> int:
        """Number of complete epochs stored (-1: not even the initialisation): the epoch files in a row whose
        seals hold, so a trajectory resumes after the last good one and what follows is recomputed."""
        e = -1
        while self.path(expert, e + 1).exists():
            try:
                read_entry(self.path(expert, e + 1), self.key(expert, e + 1))
            except Exception as exc:  # damaged, foreign or edited: retrain from the epoch before
                report_damaged(self.path(expert, e + 1), exc)
                break
            e += 1
        return e

    def load(self, expert: int, epoch: int) -> dict:
        return torch_entry(self.path(expert, epoch), self.key(expert, epoch))

    def get(self, expert: int, epoch: int) -> torch.Tensor:
        """Flat parameters of ``expert`` after ``epoch`` epochs."""
        return self.load(expert, epoch)["params"]

    def save(self, expert: int, epoch: int, payload: dict) -> None:
        write_entry(self.path(expert, epoch), self.key(expert, epoch), torch_bytes(payload))


class TM(CondensationMethod):
    name = "tm"
    version = "1"
    description = ("trajectory matching (MTT, Cazenavette et al. 2022): learn images and a step size so "
                   "student steps from an expert checkpoint land near a later one")
    default_params: ClassVar[dict[str, Any]] = {
        **COMMON_DEFAULTS,
        "iterations": 5000,
        "syn_steps": 30,
        "expert_epochs": 2,
        "max_start_epoch": 40,
        "lr_img": 1000.0,
        "momentum_img": 0.5,
        "lr_lr": 1.0e-5,
        "momentum_lr": 0.5,
        "lr_teacher": 0.01,
        "batch_syn": None,            # None: the whole synthetic set per student step
        "num_experts": 100,
        "expert_train_epochs": 50,
        "expert_batch": 256,
        "expert_momentum": 0.0,
        "expert_weight_decay": 0.0,
        "checkpoint_every": 100,
    }

    # ---- experts ---------------------------------------------------------------------------
    #: the parameters the expert trajectories depend on (MAT and GUARD add their training loss's)
    expert_params: ClassVar[tuple[str, ...]] = (
        "net_width", "net_depth", "net_norm", "dsa_strategy", "dsa_params", "lr_teacher", "expert_batch",
        "expert_momentum", "expert_weight_decay")
    expert_kind: ClassVar[str] = "tm-experts"  # the expert cache key's name
    buffer_prefix: ClassVar[str] = "experts"   # the expert folder's

    def expert_key(self, data) -> str:
        p = self.semantic_params()
        # trajectories do not depend on their length: a longer buffer extends a shorter one
        return content_key(self.expert_kind, self.version, data.fingerprint(), data.num_classes,
                           {k: p[k] for k in self.expert_params})

    def expert_loss(self, ctx: Context) -> BatchLoss | None:
        """The experts' minibatch loss (``None``: cross-entropy, MTT's natural training)."""
        return None

    def trajectory_smoother(self, model: nn.Module) -> ParameterEMA | None:
        """What the stored trajectory follows instead of the raw weights (``None``: the weights)."""
        return None

    def extra_key(self, data) -> list:
        return [self.expert_key(data)]

    def buffer(self, data) -> ExpertBuffer:
        return ExpertBuffer(cache_dir("condensation") / f"{self.buffer_prefix}-{self.expert_key(data)}")

    def prepare(self, ctx: Context) -> None:
        p = self.params
        need = int(p["max_start_epoch"]) - 1 + int(p["expert_epochs"])
        if int(p["max_start_epoch"]) < 1 or int(p["expert_epochs"]) < 1:
            raise MethodError("tm: max_start_epoch and expert_epochs must be >= 1")
        if need > int(p["expert_train_epochs"]):
            raise MethodError(f"tm: max_start_epoch - 1 + expert_epochs = {need} exceeds expert_train_epochs "
                              f"= {p['expert_train_epochs']}")
        buf = self.buffer(ctx.data)
        ctx.scratch["buffer"] = buf
        ctx.scratch["expert_s"] = self.train_experts(ctx, buf)

    def train_experts(self, ctx: Context, buf: ExpertBuffer) -> float:
        p = self.params
        epochs, n_exp = int(p["expert_train_epochs"]), int(p["num_experts"])
        todo = [(i, buf.epochs_done(i)) for i in range(n_exp)]
        remaining = sum(epochs - max(d, 0) + (d < 0) for i, d in todo if d < epochs)
        if remaining == 0:
            return 0.0
        t0 = time.perf_counter()
        bar = self.progress_bar(total=remaining, initial=0, desc="tm experts")
        try:
            for i, done in todo:
                if done >= epochs:
                    continue
                net = build_net(ctx, draw_seed(seeded_generator("tm-expert", i)))
                model = body(net)
                student = FlatModel(model)
                opt = torch.optim.SGD(model.parameters(), lr=float(p["lr_teacher"]),
                                      momentum=float(p["expert_momentum"]),
                                      weight_decay=float(p["expert_weight_decay"]))
                smoother = self.trajectory_smoother(model)

                def point() -> torch.Tensor:  # the trajectory's parameters now
                    return (smoother.params if smoother is not None else flat_params(model)).cpu()

                if done < 0:
                    buf.save(i, 0, {"params": point(), "train_loss": float("nan"), "seconds_total": 0.0})
                    done, seconds = 0, 0.0
                    bar.update(1)
                else:  # resume from the last stored epoch
                    state = buf.load(i, done)
                    seconds = float(state["seconds_total"])
                    weights = state.get("weights", state["params"])  # "weights": the raw ones, when smoothed
                    with torch.no_grad():
                        for prm, v in zip(model.parameters(), student.unflatten(weights.to(ctx.device)).values()):
                            prm.copy_(v)
                    if smoother is not None:
                        smoother.params = state["params"].to(ctx.device).clone()
                    if "momentum" in state:
                        mom = student.unflatten(state["momentum"].to(ctx.device))
                        for prm, v in zip(model.parameters(), mom.values()):
                            opt.state[prm]["momentum_buffer"] = v.clone()
                loss_fn = self.expert_loss(ctx)
                for e in range(done, epochs):
                    te = time.perf_counter()
                    model.train()
                    loss = train_epoch(ctx, model, opt, ctx.real, ctx.real_labels, int(p["expert_batch"]),
                                       seeded_generator("tm-expert", i, "epoch", e), loss_fn=loss_fn,
                                       after_step=None if smoother is None else smoother.update)
                    seconds += time.perf_counter() - te
                    payload = {"params": point(), "train_loss": float(loss),
                               "seconds_total": seconds}  # training time of this expert so far
                    if smoother is not None:
                        payload["weights"] = flat_params(model).cpu()
                    if float(p["expert_momentum"]) > 0:
                        payload["momentum"] = torch.cat([opt.state[prm]["momentum_buffer"].detach().reshape(-1)
                                                         for prm in model.parameters()]).cpu()
                    buf.save(i, e + 1, payload)
                    bar.update(1)
                    bar.set_postfix(expert=i, loss=f"{loss:.3f}", refresh=False)
        finally:
            bar.close()
        return time.perf_counter() - t0

    # ---- distillation -----------------------------------------------------------------------
    def setup(self, ctx: Context) -> None:
        p = self.params
        syn_lr = torch.tensor(float(p["lr_teacher"]), device=ctx.device).requires_grad_(True)
        ctx.tensors["syn_lr"] = syn_lr
        ctx.optimizers["img"] = torch.optim.SGD([ctx.z], lr=float(p["lr_img"]), momentum=float(p["momentum_img"]))
        ctx.optimizers["lr"] = torch.optim.SGD([syn_lr], lr=float(p["lr_lr"]), momentum=float(p["momentum_lr"]))
        ctx.scratch["student"] = FlatModel(body(build_net(ctx, 0)))

    def step(self, ctx: Context, it: int) -> float:
        p = self.params
        gen = seeded_generator(self.name, ctx.seed, it)
        buf: ExpertBuffer = ctx.scratch["buffer"]
        expert = int(torch.randint(0, int(p["num_experts"]), (1,), generator=gen))
        start_epoch = int(torch.randint(0, int(p["max_start_epoch"]), (1,), generator=gen))
        start = buf.get(expert, start_epoch).to(ctx.device)
        target = buf.get(expert, start_epoch + int(p["expert_epochs"])).to(ctx.device)
        n_syn = ctx.z.shape[0]
        batch_syn = n_syn if p["batch_syn"] is None else max(1, min(int(p["batch_syn"]), n_syn))
        ctx.scratch["student"].model.train()
        end = student_rollout(ctx.scratch["student"], start, ctx.z, ctx.syn_labels, ctx.tensors["syn_lr"],
                              int(p["syn_steps"]), batch_syn, ctx.dsa, gen)
        loss = normalized_distance(end, start, target)
        sgd_step(ctx, loss, ("img", "lr"))
        return float(loss.detach())

    def extra_meta(self, ctx: Context) -> dict:
        buf: ExpertBuffer = ctx.scratch["buffer"]
        p = self.params
        n, epochs = int(p["num_experts"]), int(p["expert_train_epochs"])
        finals = [buf.load(i, epochs) for i in range(n)]
        final_losses = [float(f["train_loss"]) for f in finals]
        expert_total = sum(float(f["seconds_total"]) for f in finals)
        return {
            "syn_lr": float(ctx.tensors["syn_lr"].detach()),
            "expert_buffer": buf.root.name,
            "expert_train_s_this_call": float(ctx.scratch.get("expert_s", 0.0)),
            "expert_train_s_total": expert_total,
            "expert_final_train_loss": sum(final_losses) / len(final_losses),
            "matching": "||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2 (MTT)",
        }


def trajectory_distance(method: TM, data, images: torch.Tensor, labels: torch.Tensor, syn_lr: float,
                        pairs: list[tuple[int, int]], device: str = "cpu") -> float:
    """Diagnostic: mean normalised student-to-expert distance over fixed (expert, start epoch)
    pairs, no augmentation, full-batch steps, step size ``syn_lr`` (images are pixels in [0, 1])."""
    from .common import STD_FLOOR

    p = method.params
    buf = method.buffer(data)
    mean, std = data.channel_stats(floor=STD_FLOOR)
    z = (images - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    ctx_like = type("C", (), {})()
    ctx_like.channels, ctx_like.size, ctx_like.num_classes = images.shape[1], images.shape[2], data.num_classes
    ctx_like.mean_list, ctx_like.std_list, ctx_like.params, ctx_like.device = mean, std, p, torch.device(device)
    student = FlatModel(body(build_net(ctx_like, 0)))
    out = []
    for expert, t in pairs:
        start, target = buf.get(expert, t), buf.get(expert, t + int(p["expert_epochs"]))
        end = student_rollout(student, start, z, labels, torch.tensor(syn_lr), int(p["syn_steps"]), z.shape[0],
                              DSA("none"), torch.Generator().manual_seed(0))
        out.append(float(normalized_distance(end.detach(), start, target)))
    return sum(out) / len(out)
