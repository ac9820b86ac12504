"""The attack contract and the robustness evaluation; no attack library is imported here.

Attacks are plugins (``register_attacks``): an ``AttackSpec`` owns its settings (defaults and
their validation) and ``build``s, for one model, norm, radius and seed, a function ``x, y ->
x_adv``. An ``AttackSet`` names several attacks (``paper``, ``standard``), optionally with settings
it pins. ``evaluate_robustness`` runs the configured attacks on the same test points, checks every
adversarial input against the eps-ball and [0, 1], and keeps per-point robust flags: by default
as a cascade like AutoAttack (an attack runs only on the points every earlier one left robust),
or ``independent`` (every attack on every clean-correct point). The robust accuracy is the
pointwise worst case over every attack run. ``pgd`` below is also the training attack.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .results import decode_point_flags, encode_point_flags

NORMS = ("linf", "l2")


def l2_epsilon(eps_linf: float, input_dim: int) -> float:
    """Paper §4: eps_2 = sqrt(2n / (pi e)) * eps_inf keeps the l2 and l-inf balls' volumes similar."""
    return math.sqrt(2.0 * input_dim / (math.pi * math.e)) * eps_linf


def per_sample_eps(eps: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``eps`` (one radius or one per sample) shaped to broadcast against the batch ``x``."""
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if e.ndim == 0:
        e = e.expand(x.shape[0])
    return e.view(-1, *([1] * (x.ndim - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Project onto the eps-ball around x intersected with the [0, 1] box (the ball alone when not ``clip``)."""
    delta = x_adv - x
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, eps), -eps)
    else:
        n = delta.flatten(1).norm(dim=1).view(-1, *([1] * (x.ndim - 1)))
        delta = delta * torch.clamp(eps / n.clamp_min(1e-12), max=1.0)
    return (x + delta).clamp_(0.0, 1.0) if clip else x + delta


#: a per-sample attack loss ``(logits, y) -> [B]`` that PGD ascends
AttackLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float | torch.Tensor,
        steps: int, step_size: float, random_start: bool = True, loss: AttackLoss = cross_entropy_loss,
        clip: bool = True) -> torch.Tensor:
    """Projected gradient ascent on ``loss`` (default: the cross-entropy; Madry et al.); ``step_size`` is a
    fraction of eps. ``clip=False`` leaves x + delta outside the [0, 1] box, as the paper authors' l_inf
    PGD does: only for training, an evaluation attack must stay in the box.

    ``eps`` may be one number or one radius per sample (generalized adversarial training).
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}' (expected one of {NORMS})")
    eps_b = per_sample_eps(eps, x)
    alpha = step_size * eps_b
    x = x.detach()
    if random_start:
        if norm == "linf":
            delta = (torch.rand_like(x) * 2 - 1) * eps_b
        else:
            d = torch.randn_like(x)
            d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
            delta = d * eps_b * torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype)
        x_adv = (x + delta).clamp(0.0, 1.0) if clip else x + delta
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():  # the evaluation runs attacks under no_grad, as AutoAttack does
            (grad,) = torch.autograd.grad(loss(model(x_adv), y).sum(), x_adv)
        with torch.no_grad():
            if norm == "linf":
                x_adv = x_adv + alpha * grad.sign()
            else:
                g = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
                x_adv = x_adv + alpha * grad / g
            x_adv = project(x_adv, x, norm, eps_b, clip)
    return x_adv.detach()




# --- the contract ----------------------------------------------------------------------------
#: build(model, *, norm, eps, params, seed, device[, surrogate]) -> (x, y) -> x_adv. A minimal-perturbation
#: attack may return ``(x_adv, size)`` instead: per point, the norm of the smallest perturbation it found
#: that changes the decision (``inf`` where none), whose median the evaluation reports.
AttackBuilder = Callable[..., Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class AttackSpec:
    name: str
    build: AttackBuilder
    description: str = ""
    #: the attack's settings and their defaults; a protocol's ``attacks.<name>`` block overrides them
    defaults: dict[str, Any] = field(default_factory=dict)
    #: extra validation of the merged settings (raise ProtocolError); types and unknown keys are checked for every attack
    check: Callable[[dict[str, Any]], None] | None = None
    autoattack: bool = False  # one of AutoAttack's components (counted in ``autoattack_acc``)
    #: a transfer attack: ``build`` also gets ``surrogate=``, the model the examples are crafted on
    needs_surrogate: bool = False


@dataclass(frozen=True)
class AttackSet:
    name: str
    members: tuple[str, ...]
    description: str = ""
    #: settings the set fixes (``standard`` is AutoAttack's own); a protocol may not override them
    pinned: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfiguredAttack:
    """An attack with its validated settings, as one evaluation runs it."""

    spec: AttackSpec
    params: dict[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    def key(self) -> list:
        return [self.name, self.params]


def check_params(spec: AttackSpec, given: Any, where: str) -> dict[str, Any]:
    """Merge a protocol block into the attack's defaults: known keys, the defaults' types, counts >= 1."""
    from .errors import ProtocolError
    from .names import unknown_name_message

    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ProtocolError(f"{where}: expected a mapping, got {given!r}")
    unknown = set(given) - set(spec.defaults)
    if unknown:
        raise ProtocolError(f"{where}: " + "; ".join(unknown_name_message(f"setting of attack {spec.name}", k, spec.defaults)
                                                    for k in sorted(unknown)))
    params = dict(spec.defaults)
    for key, value in given.items():
        default = spec.defaults[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        else:
            ok = isinstance(value, type(default))
        if not ok:
            kind = {bool: "true/false", int: "an integer of at least 1", float: "a finite number above 0"}.get(type(default), type(default).__name__)
            raise ProtocolError(f"{where}.{key}: expected {kind}, got {value!r}")
        params[key] = float(value) if isinstance(default, float) else value
    if spec.check is not None:
        spec.check(params)
    return params


def attack_members(names: tuple[str, ...], lookup: Callable[[str], Any]) -> list[str]:
    """The attacks ``names`` stand for, sets expanded, in run order."""
    out: list[str] = []
    for name in names:
        item = lookup(name)
        for member in (item.members if isinstance(item, AttackSet) else (name,)):
            if member not in out:
                out.append(member)
    return out


def configure_attacks(names: tuple[str, ...], blocks: dict[str, Any], lookup: Callable[[str], Any]) -> list[ConfiguredAttack]:
    """Expand sets, apply the protocol's ``attacks:`` blocks and validate, in run order."""
    from .errors import ProtocolError

    if not names:
        raise ProtocolError("evaluation.attacks: name at least one attack or attack set")
    chosen: list[ConfiguredAttack] = []
    for name in names:
        item = lookup(name)
        if isinstance(item, AttackSet):
            for member in item.members:
                if member in item.pinned and member in blocks:
                    raise ProtocolError(f"attacks.{member}: the '{item.name}' set runs {member} with its own fixed "
                                        "settings; remove the block or list the attack by name")
            members = [(m, item.pinned.get(m)) for m in item.members]
        else:
            members = [(name, None)]
        for member, pinned in members:
            spec = lookup(member)
            if not isinstance(spec, AttackSpec):
                raise ProtocolError(f"attack set '{name}' names '{member}', which is not an attack")
            given = pinned if pinned is not None else blocks.get(member)
            attack = ConfiguredAttack(spec, check_params(spec, given, f"attacks.{member}"))
            same = [a for a in chosen if a.name == member]
            if same and same[0].params != attack.params:
                raise ProtocolError(f"attack '{member}' is asked twice with different settings")
            if not same:
                chosen.append(attack)
    for name in blocks:
        if name not in {a.name for a in chosen}:
            lookup(name)  # unknown name -> did-you-mean
            raise ProtocolError(f"attacks.{name}: settings for an attack the evaluation does not run")
    return chosen


# --- the evaluation ----------------------------------------------------------------------------
EVAL_MODES = ("cascade", "independent")


class EvalCheckpoint:
    """Where an interrupted evaluation keeps its progress (flags so far, batches done per attack)."""

    def load(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        pass


def encode_flags(flags: torch.Tensor) -> str:
    """Per-point booleans in the records' ``packbits-base64`` (500 points: 84 characters)."""
    return encode_point_flags(flags.cpu().numpy())


def decode_flags(text: str, n: int) -> torch.Tensor:
    return torch.from_numpy(decode_point_flags(text, n))


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, bs: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + bs]).argmax(1) for i in range(0, len(x), bs)])


def evaluate_robustness(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, norm: str, eps: float,
                        attacks: list[ConfiguredAttack], mode: str = "cascade", batch_size: int = 500, seed: int = 0,
                        device: torch.device | str = "cpu", checkpoint: EvalCheckpoint | None = None,
                        progress: bool | None = None, surrogate: nn.Module | None = None) -> dict[str, Any]:
    """Clean accuracy, the accuracy after each attack, the pointwise worst case and per-point flags.

    Everything stays on ``device``; batches are the robust points in index order, as AutoAttack
    takes them, and every attack is built with the evaluation's seed, so a cascade of pyautoattack
    components gives exactly AutoAttack's flags. ``attacks[name]`` is, in cascade mode, the
    accuracy after that attack and all earlier ones; in independent mode, that attack's own.
    Transfer attacks craft their examples on ``surrogate``; minimal-perturbation attacks add
    ``minimal_perturbation[name]``, the median over the clean-correct points they ran on.
    """
    from tqdm.auto import tqdm

    if mode not in EVAL_MODES:
        raise ValueError(f"unknown evaluation mode '{mode}' (expected one of {EVAL_MODES})")
    device = torch.device(device)
    model.eval()
    x_all, y_all = images.to(device), labels.to(device)
    n = int(y_all.numel())
    state = checkpoint.load() if checkpoint is not None else None
    if state is None:
        state = {"clean": (_predict(model, x_all, batch_size) == y_all).cpu(), "flags": {}, "done": {}}
    clean = state["clean"].to(device)
    flags: dict[str, torch.Tensor] = {}
    medians: dict[str, float | None] = {}
    survivors = clean.clone()
    bar = tqdm(attacks, desc=f"attacks {norm}", leave=False, disable=None if progress is None else not progress)
    for attack in bar:
        bar.set_postfix(attack=attack.name)
        ok = state["flags"].get(attack.name)
        ok = (survivors if mode == "cascade" else clean).clone() if ok is None else ok.to(device)
        # the points this attack works on are fixed before it starts, so a resumed run takes the same batches
        todo = torch.nonzero(survivors if mode == "cascade" else clean).flatten()
        extra = {}
        if attack.spec.needs_surrogate:
            if surrogate is None:
                raise ValueError(f"attack '{attack.name}' is a transfer attack and needs a surrogate model")
            surrogate.eval()
            extra["surrogate"] = surrogate
        run = attack.spec.build(model, norm=norm, eps=eps, params=attack.params, seed=seed, device=device, **extra)
        sizes = state.setdefault("sizes", {}).get(attack.name)  # minimal-perturbation attacks only
        batches = [todo[i:i + batch_size] for i in range(0, todo.numel(), batch_size)]
        for b_i in range(int(state["done"].get(attack.name, 0)), len(batches)):
            b = batches[b_i]
            x, y = x_all[b], y_all[b]
            with torch.no_grad():  # attacks enable gradients where they need them (as inside AutoAttack)
                x_adv = run(x, y)
                if isinstance(x_adv, tuple):
                    x_adv, size = x_adv
                    sizes = torch.full((n,), float("nan")) if sizes is None else sizes
                    sizes[b.cpu()] = size.detach().float().cpu()
                check_perturbation(x_adv, x, norm, eps, attack.name)
                ok[b] = model(x_adv).argmax(1) == y
            if checkpoint is not None:
                state["flags"][attack.name] = ok.cpu()
                state["done"][attack.name] = b_i + 1
                if sizes is not None:
                    state["sizes"][attack.name] = sizes
                checkpoint.save(state)
        flags[attack.name] = ok
        if sizes is not None:
            state["sizes"][attack.name] = sizes
            median = float(sizes[~torch.isnan(sizes)].median())
            medians[attack.name] = median if math.isfinite(median) else None  # most points never flipped
        if mode == "cascade":
            survivors = ok
        state["flags"][attack.name] = ok.cpu()
        state["done"][attack.name] = len(batches)

    def acc(t: torch.Tensor) -> float:
        return int(t.sum()) / n  # exact ratio of counts, not a float32 mean

    worst = torch.stack([clean, *flags.values()]).all(0)
    out: dict[str, Any] = {"n": n, "mode": mode, "clean_acc": acc(clean),
                           "attacks": {name: acc(f) for name, f in flags.items()}, "robust_acc": acc(worst)}
    aa = [a.name for a in attacks if a.spec.autoattack]
    prefix = [a.name for a in attacks[:len(aa)]]
    if aa and (mode == "independent" or prefix == aa):  # in a cascade, only when AutoAttack's components run first
        out["autoattack_acc"] = acc(torch.stack([clean, *(flags[a] for a in aa)]).all(0))
    if medians:
        out["minimal_perturbation"] = medians
    out["flags"] = {"encoding": "packbits-base64", "clean": encode_flags(clean),
                    **{name: encode_flags(f) for name, f in flags.items()}}
    return out


def check_perturbation(x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float, name: str, tol: float = 1e-4) -> None:
    """An attack that leaves the threat model would inflate robustness claims: refuse it."""
    if x_adv.shape != x.shape or not torch.isfinite(x_adv).all():
        raise RuntimeError(f"attack '{name}' returned inputs of another shape or with NaN")
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    if (size > eps * (1 + tol) + 1e-6).any() or x_adv.min() < -1e-6 or x_adv.max() > 1 + 1e-6:
        raise RuntimeError(f"attack '{name}' produced inputs outside the {norm} ball of radius {eps} or outside [0, 1]")
