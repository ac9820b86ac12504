"""Protocols: versioned YAML data -> frozen dataclasses with a canonical content hash.

A protocol fixes everything that moves the numbers: model, training, adversarial training,
attack radii, evaluation attacks, proxy-model settings and per-method parameters. Its hash
(over the parsed values, so formatting and key order don't matter) goes into every record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from .attacks import EVAL_MODES, NORMS, l2_epsilon
from .errors import ProtocolError, UnknownNameError
from .names import unknown_name_message
from .userfiles import load_yaml, read_yaml_file

PROTOCOL_PACKAGE = "dcrobench_protocols"
#: a protocol's name is a folder name of its records (``<name>-v<version>``): file systems allow 255 bytes
MAX_NAME_LENGTH = 100
MAX_SEED = 2**32 - 1  # numpy's generators take seeds up to 32 bits
MAX_SEED_COUNT = 1000  # `--seeds N` runs seeds 0..N-1: more than this is a typo, not a plan


def at_least(low: float, *, default: Any, exclusive: bool = False, below: float | None = None):
    """A settings field with its allowed range, checked by :func:`parse_settings` (``below``: excluded upper bound)."""
    return field(default=default, metadata={"low": low, "exclusive": exclusive, "below": below})


#: reductions of a weighted set's minibatch loss (``TrainSettings.weighted_loss``)
WEIGHTED_LOSSES = ("mean", "batch-sum")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = at_least(1, default=20)
    batch_size: int = at_least(1, default=128)
    lr: float = at_least(0, default=0.01, exclusive=True)
    adv_lr: float | None = at_least(0, default=None, exclusive=True)  # learning rate of adversarial training; None = lr
    momentum: float = at_least(0, default=0.9, below=1)
    weight_decay: float = at_least(0, default=5e-4)
    schedule: str = "constant"  # constant | cosine
    #: how a weighted set's per-sample losses (weights of mean 1) become a minibatch's loss:
    #: ``mean`` (sum_b w_b l_b / B, an estimate of Def. 5's loss) or ``batch-sum`` (sum_b w_b l_b,
    #: the authors' code), which scales the step by the batch size
    weighted_loss: str = "mean"

    @property
    def adversarial_lr(self) -> float:
        return self.lr if self.adv_lr is None else self.adv_lr

    def content(self) -> dict[str, Any]:
        """The values that determine training; options added later count only when set, so the
        hashes and stage keys of protocols that do not use them stay what they were."""
        d = dataclasses.asdict(self)
        if d["weighted_loss"] == "mean":
            d.pop("weighted_loss")
        return d


@dataclass(frozen=True)
class AdversarialSettings:
    steps: int = at_least(1, default=10)
    step_size: float = at_least(0, default=0.25, exclusive=True)  # fraction of eps
    random_start: bool = True
    weighted_radius: str = "eps"  # eps | eps+eta
    #: keep x + delta in the [0, 1] box (the paper authors' l_inf PGD does not)
    clip: bool = True
    #: per-norm replacements of steps, step_size, random_start and clip (e.g. the authors' 40-step l_2 PGD)
    per_norm: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_norm(self, norm: str) -> "AdversarialSettings":
        """The settings adversarial training uses for ``norm``."""
        over = self.per_norm.get(norm, {})
        return dataclasses.replace(self, per_norm={}, **over) if over else dataclasses.replace(self, per_norm={})

    def content(self) -> dict[str, Any]:
        """The values that determine training; options added later count only when set, so the
        hashes of protocols that do not use them stay what they were."""
        d = dataclasses.asdict(self)
        if d["clip"]:
            d.pop("clip")
        if not d["per_norm"]:
            d.pop("per_norm")
        return d


#: the adversarial settings a ``per_norm`` block may replace
PER_NORM_KEYS = ("steps", "step_size", "random_start", "clip")


@dataclass(frozen=True)
class EvalSettings:
    """What robustness is measured with; each attack's own settings are the protocol's ``attacks`` block."""

    attacks: tuple[str, ...] = ()  # attack and attack-set names (plugins), in run order; a protocol must name them
    mode: str = "cascade"  # cascade (AutoAttack's: later attacks only on points still robust) | independent
    test_subset: int = at_least(0, default=0)  # 0 = full test set
    batch_size: int = at_least(1, default=500)
    #: robustness curve: the adversarially trained model is also attacked at these multiples of the
    #: protocol's epsilon (recorded as ``adversarial.eps_curve``; the robust score stays at 1x)
    eps_sweep: tuple[float, ...] = ()
    #: further attacks (and sets), each run on its own on every clean-correct point of both models and
    #: reported per attack (``extra_attacks`` of the evaluation); outside the robust score unless
    #: ``extra_in_score``, which makes the score the pointwise worst case over these too
    extra_attacks: tuple[str, ...] = ()
    extra_in_score: bool = False


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int = at_least(1, default=1)
    description: str = ""
    model: str = "resnet18"
    model_params: dict[str, Any] = field(default_factory=dict)
    budget: int = at_least(1, default=50)
    seeds: tuple[int, ...] = (0, 1, 2)
    train: TrainSettings = TrainSettings()
    adversarial: AdversarialSettings = AdversarialSettings()
    epsilon_linf: dict[str, float] = field(default_factory=dict)
    evaluation: EvalSettings = EvalSettings()
    attacks: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-attack settings, owned by the attack plugins
    #: a block shared by several methods (those naming it in ``protocol_blocks``): the proxy model
    proxy: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = field(default="", compare=False)

    def content(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        d.pop("description")
        d["adversarial"] = self.adversarial.content()
        d["train"] = self.train.content()
        for option in ("eps_sweep", "extra_attacks", "extra_in_score"):
            if not d["evaluation"][option]:  # options added later hash only when set: old hashes stay valid
                d["evaluation"].pop(option)
        return d

    @property
    def hash(self) -> str:
        """Hash of the whole protocol file's values."""
        return _hash(self.content())

    def hash_for(self, method: str, blocks: Sequence[str] = (), version: int | None = None) -> str:
        """Hash of what determines one method's numbers: other methods' parameters are left out, and so
        is every shared block (``proxy``) the method does not take (``blocks``, its ``protocol_blocks``),
        so tuning one method or the proxy does not orphan the records of methods it cannot change.
        ``version``: the hash these settings had under another version number; equal to an older
        record's hash, it proves the method's settings did not change since (a version bump for
        another method)."""
        d = self.content()
        if version is not None:
            d["version"] = version
        d["methods"] = d["methods"].get(method, {})
        d["train_overrides"] = d["train_overrides"].get(method, {})
        for block in SHARED_BLOCKS:
            if block not in blocks:
                d.pop(block)
        return _hash(d)

    def eps(self, dataset: str, norm: str, input_dim: int) -> float:
        if norm not in NORMS:
            raise ProtocolError(f"unknown norm '{norm}' (expected one of {', '.join(NORMS)})")
        if dataset in self.epsilon_linf:
            e = self.epsilon_linf[dataset]
        elif "default" in self.epsilon_linf:
            e = self.epsilon_linf["default"]
        else:
            raise ProtocolError(f"protocol '{self.name}' sets no epsilon_linf for dataset '{dataset}' and no default")
        return e if norm == "linf" else l2_epsilon(e, input_dim)

    def train_for(self, method: str) -> TrainSettings:
        """Training settings with the method's overrides (e.g. appendix C's per-method learning rates)."""
        over = self.train_overrides.get(method, {})
        return dataclasses.replace(self.train, **over) if over else self.train

    def method_params(self, method: str, blocks: tuple[str, ...] = ()) -> dict[str, Any]:
        """The method's parameters: its ``methods.<name>`` block, plus each shared protocol block the
        method takes (``CompressionMethod.protocol_blocks``) as the parameter of that name, unless its
        own block sets it."""
        params = dict(self.methods.get(method, {}))
        for block in blocks:
            if block not in SHARED_BLOCKS:
                raise ProtocolError(f"method '{method}' asks for protocol block '{block}'; shared blocks: "
                                    f"{', '.join(SHARED_BLOCKS)}")
            params.setdefault(block, dict(getattr(self, block)))
        return params

    def seed_list(self, n: int | None) -> list[int]:
        """The seeds of ``--seeds n``: the protocol's first ``n``, and beyond its list the integers after its
        largest seed (seeds [5, 6] and n = 3 give [5, 6, 7]; [0, 1, 2] and n = 5 give 0..4)."""
        if n is None:
            return list(self.seeds)
        if n < 1:
            raise ProtocolError(f"--seeds must be at least 1, got {n}")
        if n > MAX_SEED_COUNT:
            raise ProtocolError(f"--seeds must be at most {MAX_SEED_COUNT}, got {n}")
        if n <= len(self.seeds):
            return list(self.seeds[:n])
        start = max(self.seeds, default=-1) + 1
        if start + n - len(self.seeds) - 1 > MAX_SEED:
            raise ProtocolError(f"--seeds {n}: the seeds after the protocol's largest ({start - 1}) pass {MAX_SEED}")
        return [*self.seeds, *range(start, start + n - len(self.seeds))]


#: top-level protocol blocks a method may take as a parameter (``CompressionMethod.protocol_blocks``)
SHARED_BLOCKS = ("proxy",)


def _hash(content: dict[str, Any]) -> str:
    blob = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _number(value: Any, where: str) -> float:
    if isinstance(value, str):  # "8/255"
        try:
            value = float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            raise ProtocolError(f"{where}: '{value}' is not a number or fraction") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ProtocolError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def check_seeds(seeds: Any, where: str) -> tuple[int, ...]:
    """Seeds as given in a protocol, a grid or on the command line: at least one, distinct integers (not true/false,
    not 1.5) in 0..MAX_SEED."""
    seeds = tuple(seeds) if isinstance(seeds, (list, tuple)) else (seeds,)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ProtocolError(f"{where}: expected a list of integers, got {list(seeds)!r}")
    if not seeds:
        raise ProtocolError(f"{where}: give at least one seed")
    outside = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if outside:
        raise ProtocolError(f"{where}: seeds must lie in 0..{MAX_SEED}, got {outside[0]}")
    if len(set(seeds)) != len(seeds):
        raise ProtocolError(f"{where}: seeds repeat: {list(seeds)}")
    return seeds


def _check_ranges(obj: Any, where: str) -> None:
    """The ranges the settings class declares with :func:`at_least`."""
    for f in fields(obj):
        if "low" not in f.metadata or getattr(obj, f.name) is None:
            continue
        value, low, exclusive, below = getattr(obj, f.name), f.metadata["low"], f.metadata["exclusive"], f.metadata["below"]
        if value < low or (exclusive and value == low):
            bound = f"greater than {low}" if exclusive else f"at least {low}"
            raise ProtocolError(f"{where}.{f.name}: must be {bound}, got {value!r}")
        if below is not None and value >= below:
            raise ProtocolError(f"{where}.{f.name}: must be below {below}, got {value!r}")


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: expected a mapping, got {value!r}")
    return value


def parse_settings(cls, data: Any, where: str):
    """A settings dataclass from a protocol block: unknown keys (with near matches), types and declared
    ranges checked, each error one line naming the key path. Plugins parse their own blocks with it."""
    obj = _build(cls, data, where)
    _check_ranges(obj, where)
    return obj


def _build(cls, data: Any, where: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ProtocolError(f"{where}: " + "; ".join(unknown_name_message("key", k, known) for k in sorted(unknown)))
    kwargs = {}
    for key, value in data.items():
        ftype = str(known[key].type)
        try:
            if ftype.startswith("int"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ProtocolError(f"{where}.{key}: expected an integer, got {value!r}")
            elif ftype.startswith("float") and not (ftype.endswith("None") and value is None):
                value = _number(value, f"{where}.{key}")
            elif ftype == "bool" and not isinstance(value, bool):
                raise ProtocolError(f"{where}.{key}: expected true/false, got {value!r}")
            elif ftype.startswith("tuple"):
                value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
                if "str" in ftype and not all(isinstance(v, str) and v for v in value):
                    raise ProtocolError(f"{where}.{key}: expected a list of names, got {list(value)!r}")
                if "int" in ftype and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                    raise ProtocolError(f"{where}.{key}: expected a list of integers, got {list(value)!r}")
            elif ftype == "str" and not isinstance(value, str):
                raise ProtocolError(f"{where}.{key}: expected a string, got {value!r}")
            elif ftype.startswith("dict"):
                value = _mapping(value, f"{where}.{key}")
        except TypeError:
            raise ProtocolError(f"{where}.{key}: bad value {value!r}") from None
        kwargs[key] = value
    return cls(**kwargs)


def protocol_from_dict(raw: Any, source: str = "") -> Protocol:
    if not isinstance(raw, dict):
        raise ProtocolError(f"protocol {source or ''} must be a YAML mapping")
    for required in ("name", "version"):
        if required not in raw:
            raise ProtocolError(f"protocol {source}: missing required key '{required}'")
    data = dict(raw)
    nested = {
        "train": parse_settings(TrainSettings, data.pop("train", None), "train"),
        "adversarial": parse_settings(AdversarialSettings, data.pop("adversarial", None), "adversarial"),
        "evaluation": parse_settings(EvalSettings, data.pop("evaluation", None), "evaluation"),
    }
    proto = parse_settings(Protocol, data, "protocol")
    if not 1 <= len(proto.name) <= MAX_NAME_LENGTH:
        raise ProtocolError(f"protocol.name: must have 1 to {MAX_NAME_LENGTH} characters, got {len(proto.name)}")
    check_seeds(proto.seeds, "protocol.seeds")
    eps = {str(k): _number(v, f"epsilon_linf.{k}") for k, v in _mapping(proto.epsilon_linf, "epsilon_linf").items()}
    for k, v in eps.items():
        if v <= 0:
            raise ProtocolError(f"epsilon_linf.{k}: must be greater than 0, got {v!r}")
        if v > 1:
            raise ProtocolError(f"epsilon_linf.{k}: must be at most 1 (pixels lie in [0, 1]), got {v!r}")
    methods = _mapping(proto.methods, "methods")
    for name, params in methods.items():
        _mapping(params, f"methods.{name}")
    overrides = _mapping(proto.train_overrides, "train_overrides")
    for name, over in overrides.items():
        _mapping(over, f"train_overrides.{name}")
    sweep = tuple(_number(m, "evaluation.eps_sweep") for m in nested["evaluation"].eps_sweep)
    if any(m <= 0 for m in sweep) or len(set(sweep)) != len(sweep):
        raise ProtocolError(f"evaluation.eps_sweep: multiples of epsilon must be positive and distinct, got {list(sweep)}")
    nested["evaluation"] = dataclasses.replace(nested["evaluation"], eps_sweep=tuple(sorted(sweep)))
    attacks = nested["evaluation"].attacks
    if len(set(attacks)) != len(attacks):
        raise ProtocolError(f"evaluation.attacks: names repeat: {list(attacks)}")
    extra = nested["evaluation"].extra_attacks
    if isinstance(extra, str) or not all(isinstance(a, str) for a in extra):
        raise ProtocolError(f"evaluation.extra_attacks: a list of attack names, got {extra!r}")
    if len(set(extra)) != len(extra) or set(extra) & set(nested["evaluation"].attacks):
        raise ProtocolError("evaluation.extra_attacks: names repeat, or repeat an attack of evaluation.attacks")
    if nested["evaluation"].extra_in_score and not extra:
        raise ProtocolError("evaluation.extra_in_score: there are no extra_attacks")
    nested["evaluation"] = dataclasses.replace(nested["evaluation"], extra_attacks=tuple(extra))
    if nested["evaluation"].mode not in EVAL_MODES:
        raise ProtocolError(f"evaluation.mode must be one of {', '.join(EVAL_MODES)}, got {nested['evaluation'].mode!r}")
    attack_blocks = _mapping(proto.attacks, "attacks")
    for name, params in attack_blocks.items():
        _mapping(params, f"attacks.{name}")
    per_norm: dict[str, dict[str, Any]] = {}
    for norm, over in _mapping(nested["adversarial"].per_norm, "adversarial.per_norm").items():
        if norm not in NORMS:
            raise ProtocolError(f"adversarial.per_norm: unknown norm '{norm}' (expected one of {', '.join(NORMS)})")
        over = _mapping(over, f"adversarial.per_norm.{norm}")
        bad = set(over) - set(PER_NORM_KEYS)
        if bad:
            raise ProtocolError(f"adversarial.per_norm.{norm}: unknown keys {sorted(bad)} (allowed: {', '.join(PER_NORM_KEYS)})")
        base = {k: v for k, v in dataclasses.asdict(nested["adversarial"]).items() if k != "per_norm"}
        merged = parse_settings(AdversarialSettings, {**base, **over}, f"adversarial.per_norm.{norm}")
        per_norm[norm] = {k: getattr(merged, k) for k in over}
    nested["adversarial"] = dataclasses.replace(nested["adversarial"], per_norm=per_norm)
    if nested["adversarial"].weighted_radius not in ("eps", "eps+eta"):
        raise ProtocolError("adversarial.weighted_radius must be 'eps' or 'eps+eta'")
    _check_choices(nested["train"], "train")
    train_fields = {f.name for f in fields(TrainSettings)}
    for method, over in overrides.items():
        bad = set(over or {}) - train_fields
        if bad:
            raise ProtocolError(f"train_overrides.{method}: unknown keys {sorted(bad)} (train keys: {sorted(train_fields)})")
        _check_choices(parse_settings(TrainSettings, {**dataclasses.asdict(nested["train"]), **(over or {})},
                                      f"train_overrides.{method}"), f"train_overrides.{method}")
    return dataclasses.replace(
        proto, **nested, epsilon_linf=eps, seeds=tuple(int(s) for s in proto.seeds),
        model_params=dict(_mapping(proto.model_params, "model_params")), proxy=dict(_mapping(proto.proxy, "proxy")),
        methods={str(k): dict(v or {}) for k, v in methods.items()},
        attacks={str(k): dict(v or {}) for k, v in attack_blocks.items()},
        train_overrides={str(k): dict(v or {}) for k, v in overrides.items()},
        version=int(proto.version), source=source,
    )


def _check_choices(train: TrainSettings, where: str) -> None:
    if train.schedule not in ("constant", "cosine"):
        raise ProtocolError(f"{where}.schedule must be 'constant' or 'cosine'")
    if train.weighted_loss not in WEIGHTED_LOSSES:
        raise ProtocolError(f"{where}.weighted_loss must be one of {', '.join(WEIGHTED_LOSSES)}, got {train.weighted_loss!r}")


def builtin_protocols() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(PROTOCOL_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def load_protocol(name_or_path: str) -> Protocol:
    """A built-in protocol by name (``quick``, ``paper``) or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ProtocolError(f"protocol file not found: {path}")
        return protocol_from_dict(read_yaml_file(path, "protocol"), str(path))
    return builtin_protocol(name_or_path)


def builtin_protocol(name: str) -> Protocol:
    """The protocol shipped under ``name``, never a file of that name in the working folder."""
    res = resources.files(PROTOCOL_PACKAGE) / f"{name}.yaml"
    if not res.is_file():
        raise UnknownNameError(unknown_name_message("protocol", name, builtin_protocols()))
    return protocol_from_dict(load_yaml(res.read_bytes(), name, "protocol"), name)
