"""The compression-method contract: ``CompressionMethod.compress`` returns a ``CompressedSet``.

A method receives the training set (images in [0, 1], labels), a per-class budget (images per
class, the dataset-condensation convention), a seed and a device. It returns images, labels,
optional per-sample weights (used by the weighted training loss), the chosen indices for selection
methods, and ``meta``: what the method itself reports about its run (objective values, loss curves;
recorded under the record's ``compression``). ``CompressionMethod.run`` wraps ``compress`` with
the checks and the bookkeeping every method shares (budget validation, timing, realised per-class
counts) and attaches the set's ``Provenance``, so a plugin only writes the algorithm.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch

from .errors import BudgetError, DataValidationError, Interrupted, MethodError, one_line
from .costs import shared_work
from .imageset import ImageSet

COMPRESSED_FORMAT_VERSION = 1
#: every entry a compressed-set file may hold (anything else is refused: it would be silently ignored)
PAYLOAD_KEYS = ("format_version", "images", "labels", "meta_json", "own_seconds", "weights", "indices", "extra_radius",
                "extra_radius_norm")


@dataclass(frozen=True)
class Provenance:
    """Where a compressed set comes from: written once, by ``CompressionMethod.run``, never by a method.

    Files keep it flat in their metadata JSON beside the method's own ``meta`` (the format every
    dcrobench version wrote), so a saved set says which method, parameters and training set made it.
    """

    method: str
    dataset: str
    data_fingerprint: str
    method_version: str = ""
    kind: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    per_class_counts: list[int] = field(default_factory=list)
    budget: int | None = None
    seed: int | None = None
    #: the plugin that provided the method (``distribution``, ``version``, ``plugin``)
    source: dict[str, str] | None = None
    compress_s: float = 0.0
    #: training time of a proxy model shared between methods (part of ``compress_s``)
    proxy_s: float = 0.0

    REQUIRED: ClassVar[tuple[str, ...]] = ("method", "dataset", "data_fingerprint")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def to_meta(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.keys()}

    @classmethod
    def split_meta(cls, meta: dict[str, Any]) -> tuple[Provenance | None, dict[str, Any]]:
        """(provenance, the method's own metadata) from a file's flat metadata; no provenance when a
        required key is missing or not a non-empty string (the caller names them)."""
        own = {k: v for k, v in meta.items() if k not in cls.keys()}
        if any(not isinstance(meta.get(k), str) or not meta.get(k) for k in cls.REQUIRED):
            return None, dict(meta)
        return cls(**{k: meta[k] for k in cls.keys() if k in meta}), own

    #: the most seconds a recorded cost may claim (about three years): anything above is not a measurement
    MAX_SECONDS: ClassVar[float] = 1e8

    def problems(self, per_class_counts: list[int]) -> list[str]:
        """Why this provenance (read from a file) cannot be recorded as it stands, given the set's own per-class
        counts; empty when it can. Checked before any compute: every field goes into records."""
        out = []
        for name in ("method_version", "kind"):
            if not isinstance(getattr(self, name), str):
                out.append(f"{name} must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.params, dict):
            out.append(f"params must be a mapping, got {type(self.params).__name__}")
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1):
            out.append(f"budget must be a positive integer or null, got {self.budget!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            out.append(f"seed must be a non-negative integer or null, got {self.seed!r}")
        if self.source is not None and (not isinstance(self.source, dict)
                                        or not all(isinstance(v, str) for v in self.source.values())):
            out.append("source must map names to strings")
        costs_ok = True
        for name in ("compress_s", "proxy_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= self.MAX_SECONDS:
                out.append(f"{name} must be seconds between 0 and {self.MAX_SECONDS:.0e}, got {value!r}")
                costs_ok = False
        if costs_ok and self.proxy_s > self.compress_s:
            out.append(f"proxy_s ({self.proxy_s}) is part of compress_s ({self.compress_s}) and cannot exceed it")
        if self.per_class_counts and list(self.per_class_counts) != list(per_class_counts):
            out.append(f"per_class_counts {self.per_class_counts} are not the set's own {per_class_counts}")
        return out

    def recorded(self) -> dict[str, Any]:
        """The fields a record's ``compression`` block repeats (params, counts, source and costs have
        their own fields in the record)."""
        return {k: getattr(self, k) for k in ("method", "method_version", "kind", "dataset", "data_fingerprint",
                                              "budget", "seed")}


@dataclass
class CompressedSet:
    images: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: set by ``CompressionMethod.run`` (or read from a file); ``None`` for a bare ``compress`` result
    provenance: Provenance | None = None
    #: the method's own count of its compression seconds, for work ``run`` cannot time: sessions of
    #: a resumed run, a result the method loaded from its own cache (``None``: ``run`` times it)
    own_seconds: float | None = None
    #: per-sample radius generalized adversarial training may add to eps (paper Def. 5: the eta of the
    #: sample's class), in the norm ``extra_radius_norm``; used when the protocol asks for eps+eta
    extra_radius: torch.Tensor | None = None
    extra_radius_norm: str | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def per_class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels.cpu(), minlength=num_classes).tolist()

    def content_hash(self) -> str:
        """Hash of everything training reads from the set (images, labels, weights, and the per-point extra
        radius with its norm where there is one): the set's identity.

        Metadata and file names are left out on purpose: two files with equal metadata but other
        pixels are different sets, and one set under two names is the same set. A set without an extra
        radius hashes as it did before the radius existed, so its name and records stay.
        """
        h = hashlib.sha256()
        parts = [("images", self.images, torch.float32), ("labels", self.labels, torch.int64),
                 ("weights", self.weights, torch.float32)]
        if self.extra_radius is not None:
            parts.append(("extra_radius", self.extra_radius, torch.float32))
        for name, t, dtype in parts:
            if t is None:
                h.update(f"{name}:none;".encode())
                continue
            t = t.detach().cpu().to(dtype).contiguous()
            h.update(f"{name}:{tuple(t.shape)};".encode())
            h.update(t.numpy().tobytes())
        if self.extra_radius is not None:
            h.update(f"extra_radius_norm:{self.extra_radius_norm};".encode())
        return h.hexdigest()

    def save(self, path: str | Path, new: bool = False) -> None:
        """Tensors plus JSON metadata, readable with ``torch.load(weights_only=True)``; ``new``: create the file,
        FileExistsError (nothing changed) when ``path`` exists, even one that appeared a moment ago."""
        from .fileio import atomic_torch_save

        atomic_torch_save(self.payload(), Path(path), new=new)

    def payload(self) -> dict[str, Any]:
        """What ``save`` writes: tensors and a JSON string of metadata."""
        payload: dict[str, Any] = {
            "format_version": COMPRESSED_FORMAT_VERSION,
            "images": self.images.detach().cpu().float(),
            "labels": self.labels.detach().cpu().long(),
            "meta_json": json.dumps({**self.meta, **(self.provenance.to_meta() if self.provenance else {})},
                                    sort_keys=True),
        }
        if self.own_seconds is not None:
            payload["own_seconds"] = float(self.own_seconds)
        if self.weights is not None:
            payload["weights"] = self.weights.detach().cpu().float()
        if self.indices is not None:
            payload["indices"] = self.indices.detach().cpu().long()
        if self.extra_radius is not None:
            payload["extra_radius"] = self.extra_radius.detach().cpu().float()
            payload["extra_radius_norm"] = str(self.extra_radius_norm)
        return payload

    @classmethod
    def load(cls, path: str | Path) -> CompressedSet:
        """Read a file written by ``save`` (safe: tensors and a JSON string, no pickled objects)."""
        path = Path(path)
        if not path.is_file():
            raise MethodError(f"compressed-set file not found: {path}")
        return cls.from_file_object(path, path)

    @classmethod
    def from_file_object(cls, source: Any, path: str | Path) -> CompressedSet:
        """Read what ``save`` wrote from ``source`` (a path or a binary file object); ``path`` names it in errors."""

        def bad(why: str) -> MethodError:
            return MethodError(f"cannot read compressed-set file {path}: {why}")

        try:
            payload = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt, truncated, not a torch file, or holding objects we refuse to unpickle
            raise bad(one_line(exc)) from None
        if not isinstance(payload, dict):
            raise bad(f"expected a mapping of tensors, found {type(payload).__name__}")
        missing = [k for k in ("images", "labels", "meta_json") if k not in payload]
        if missing:
            raise bad(f"missing {', '.join(missing)}")
        unknown = sorted(str(k) for k in payload if k not in PAYLOAD_KEYS)
        if unknown:
            raise bad(f"unknown entr{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))} "
                      f"(a set holds {', '.join(PAYLOAD_KEYS)})")
        for key in ("images", "labels", "weights", "indices", "extra_radius"):
            if payload.get(key) is not None and not isinstance(payload[key], torch.Tensor):
                raise bad(f"'{key}' is a {type(payload[key]).__name__}, not a tensor")
        try:
            meta = json.loads(payload["meta_json"])
        except (TypeError, ValueError) as exc:
            raise bad(f"metadata is not JSON ({one_line(exc)})") from None
        if not isinstance(meta, dict):
            raise bad("metadata is not a JSON object")
        own_seconds = payload.get("own_seconds")
        if own_seconds is not None and (isinstance(own_seconds, bool) or not isinstance(own_seconds, (int, float))):
            raise bad("'own_seconds' is not a number")
        norm = payload.get("extra_radius_norm")
        if norm is not None and not isinstance(norm, str):
            raise bad("'extra_radius_norm' is not a string")
        try:
            provenance, own = Provenance.split_meta(meta)
        except TypeError as exc:  # a key of the wrong kind
            raise bad(f"metadata does not describe its provenance ({one_line(exc)})") from None
        if provenance is None and own_seconds is None and isinstance(own.get("compress_s"), (int, float)):
            own_seconds = float(own.pop("compress_s"))  # a method's cache file from before own_seconds
        return cls(images=payload["images"], labels=payload["labels"], weights=payload.get("weights"),
                   indices=payload.get("indices"), meta=own, provenance=provenance, own_seconds=own_seconds,
                   extra_radius=payload.get("extra_radius"), extra_radius_norm=norm)


class CompressionMethod:
    """Base class of every compression method (built-in or third-party).

    Subclasses set ``name`` (CLI name), ``kind`` and override ``compress``. Constructor keyword
    arguments are the method's parameters; the protocol file supplies them (``methods.<name>``),
    so they are part of the recorded, hashed protocol.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    kind: ClassVar[str] = "selection"  # "selection" | "condensation" | "baseline"
    description: ClassVar[str] = ""
    #: selection methods pick at most the class size; condensation methods may synthesise any number.
    budget_limited_by_class: ClassVar[bool] = True
    #: ``False`` for methods that ignore the budget (the full set): records carry no budget then.
    uses_budget: ClassVar[bool] = True
    #: ``False`` when storing the compressed set in the stage cache costs more than recomputing it.
    cache_stage: ClassVar[bool] = True
    #: ``True`` when the result depends on the seed (random, proxy-model based, condensation).
    uses_seed: ClassVar[bool] = True
    default_params: ClassVar[dict[str, Any]] = {}
    #: shared protocol blocks (``dcrobench.protocol.SHARED_BLOCKS``, e.g. ``"proxy"``) the method takes
    #: as the parameter of the same name, so methods sharing a proxy model share its settings
    protocol_blocks: ClassVar[tuple[str, ...]] = ()
    #: progress bars inside ``compress``: True, False, or None (only on a terminal); set by ``run``
    progress: bool | None = None

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.default_params)
        if unknown:
            from .names import unknown_name_message

            msgs = [unknown_name_message(f"parameter of {self.name}", u, self.default_params) for u in sorted(unknown)]
            raise MethodError("; ".join(msgs))
        self.params: dict[str, Any] = {**self.default_params, **params}

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        raise NotImplementedError

    def diagnostics(self, compressed: CompressedSet, *, eps: float, norm: str) -> dict[str, Any]:
        """Method-specific checks that need the attack radius (e.g. MCS's ZIP); stored in the record."""
        return {}

    def check_output(self, result: CompressedSet, data: ImageSet, budget: int | None) -> None:
        """What a set this method made must be for ``data`` and ``budget`` (DataValidationError otherwise): asked
        of its fresh output and of a stored compress stage before reuse."""
        validate_compressed(result, data.shape, data.num_classes, budget=budget if self.uses_budget else None)
        validate_indices(result, data)

    def run(self, data: ImageSet, budget: int, seed: int, device: torch.device,
            progress: bool | None = None, source: dict[str, str] | None = None) -> CompressedSet:
        """Validate the request, call ``compress``, check the result and attach its ``Provenance``.

        ``progress`` is what ``compress`` reads as ``self.progress`` (draw with ``dcrobench.progress.bar``);
        ``source`` names the plugin that provided the method (the registry's origin).
        """
        self.progress = progress
        if self.uses_budget:
            check_budget(data, budget, self.budget_limited_by_class, self.name)
        start = time.perf_counter()
        with shared_work() as shared:
            try:
                result = self.compress(data, budget, seed, device)
            except (BudgetError, MethodError, Interrupted):
                raise
            except Exception as exc:
                raise MethodError(f"method '{self.name}' failed: {one_line(exc)}") from exc
        elapsed = time.perf_counter() - start
        if not isinstance(result, CompressedSet):
            raise MethodError(f"method '{self.name}' returned a {type(result).__name__}, not a CompressedSet")
        try:
            self.check_output(result, data, budget)
        except DataValidationError as exc:
            raise MethodError(f"method '{self.name}' returned an invalid compressed set: {exc}") from None
        clash = sorted(set(result.meta) & set(Provenance.keys()))
        if clash:
            raise MethodError(f"method '{self.name}' put {', '.join(clash)} in its metadata; the engine records "
                              "those itself (CompressedSet.provenance)")
        # a proxy loaded from the cache reports what it cost to train, so the cost is order-independent
        result.provenance = Provenance(
            method=self.name, dataset=data.name, data_fingerprint=data.fingerprint(), method_version=self.version,
            kind=self.kind, params=json_safe(self.params), per_class_counts=result.per_class_counts(data.num_classes),
            budget=budget if self.uses_budget else None, seed=seed, source=source,
            compress_s=(result.own_seconds if result.own_seconds is not None
                        else max(0.0, elapsed - shared.spent_s) + shared.original_s),
            proxy_s=shared.original_s)
        return result


def check_budget(data: ImageSet, budget: int, limited_by_class: bool, method: str) -> None:
    if budget < 1:
        raise BudgetError(f"budget must be at least 1 image per class, got {budget}")
    if limited_by_class:
        counts = data.class_counts()
        smallest = min(c for c in counts)
        if budget > smallest:
            cls = counts.index(smallest)
            raise BudgetError(
                f"budget {budget} images per class is larger than class {cls} of '{data.name}', "
                f"which has {smallest} training images; '{method}' selects real images, "
                f"so use --budget {smallest} or less"
            )


def validate_compressed(comp: CompressedSet, shape: tuple[int, ...], num_classes: int,
                        budget: int | None = None) -> None:
    """Every property a training set must have, checked before any training; raises one line."""

    def fail(msg: str) -> None:
        raise DataValidationError(msg)

    images, labels, weights = comp.images, comp.labels, comp.weights
    for name, t in (("images", images), ("labels", labels), ("weights", weights)):
        if t is not None and not isinstance(t, torch.Tensor):
            fail(f"{name} must be a tensor, got {type(t).__name__}")
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape):
        fail(f"images have shape {list(images.shape)}, expected [N, {', '.join(map(str, shape))}]")
    if labels.ndim != 1:
        fail(f"labels must be a vector, got shape {list(labels.shape)}")
    n = int(images.shape[0])
    if labels.shape[0] != n:
        fail(f"{n} images but {labels.shape[0]} labels")
    if n == 0:
        fail("the set is empty")
    if not images.is_floating_point():
        fail(f"images must be floating point in [0, 1], got {images.dtype}")
    if not torch.isfinite(images).all():
        fail("images contain NaN or infinite pixels")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        fail(f"pixels must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        fail(f"labels must be integers, got {labels.dtype}")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        fail(f"labels must lie in 0..{num_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
    if weights is not None:
        if weights.shape != (n,):
            fail(f"weights must be one number per image ({n}), got shape {list(weights.shape)}")
        if not weights.is_floating_point() and weights.dtype not in (torch.int32, torch.int64):
            fail(f"weights must be numbers, got {weights.dtype}")
        w = weights.double()
        if not torch.isfinite(w).all():
            fail("weights contain NaN or inf")
        if (w < 0).any():
            fail(f"weights must be non-negative, got {float(w.min()):.4g}")
        if not (w > 0).any():
            fail("weights are all zero")
    if comp.extra_radius is not None:
        r = comp.extra_radius
        if not isinstance(r, torch.Tensor) or r.shape != (n,) or not r.is_floating_point():
            fail(f"extra_radius must be one number per image ({n})")
        if not torch.isfinite(r).all() or (r < 0).any():
            fail("extra_radius must be finite and non-negative")
        if comp.extra_radius_norm not in ("linf", "l2", "l1"):
            fail(f"extra_radius_norm must name the norm of extra_radius, got {comp.extra_radius_norm!r}")
    if budget is not None:
        counts = torch.bincount(labels.cpu().long(), minlength=num_classes).tolist()
        over = [(c, k) for c, k in enumerate(counts) if k > budget]
        if over:
            c, k = max(over, key=lambda ck: ck[1])
            fail(f"class {c} has {k} images, more than the budget of {budget} per class "
                 f"({len(over)} class(es) over budget)")


def validate_indices(comp: CompressedSet, data: ImageSet) -> None:
    """Selection methods' chosen training indices must name the returned images' own examples."""
    idx = comp.indices
    if idx is None:
        return
    n = len(comp)
    if not isinstance(idx, torch.Tensor) or idx.shape != (n,) or idx.is_floating_point():
        raise DataValidationError("indices must give one integer training index per image")
    if idx.unique().numel() != n:
        raise DataValidationError("indices are not unique")
    if int(idx.min()) < 0 or int(idx.max()) >= len(data):
        raise DataValidationError("indices outside the training set")
    if not torch.equal(data.labels[idx.cpu()], comp.labels.cpu().long()):
        raise DataValidationError("labels do not match the labels of the chosen indices")


def json_safe(value: Any) -> Any:
    """Parameters as plain JSON values (records and hashes need them)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return json_safe(asdict(value))
    return str(value)


def select_per_class(data: ImageSet, indices_per_class: dict[int, torch.Tensor],
                     weights_per_class: dict[int, torch.Tensor] | None = None,
                     meta: dict[str, Any] | None = None) -> CompressedSet:
    """Build a CompressedSet from chosen training indices (and optional weights) per class."""
    classes = sorted(indices_per_class)
    indices = torch.cat([indices_per_class[c].long().cpu() for c in classes])
    weights = None
    if weights_per_class is not None:
        weights = torch.cat([weights_per_class[c].float().cpu() for c in classes])
    return CompressedSet(
        images=data.images[indices],
        labels=data.labels[indices],
        weights=weights,
        indices=indices,
        meta=dict(meta or {}),
    )
