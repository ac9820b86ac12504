"""The life of one ``dcrobench run``: compress -> train (standard, adversarial) -> attack -> record."""

from __future__ import annotations

import datetime as dt
import platform
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .attacks import AttackSpec, evaluate_robustness
from .datasets import DatasetSpec, load_dataset, stratified_subset
from .errors import DcrobenchError, MethodError
from .imageset import ImageSet
from .methods import CompressedSet, CompressionMethod, json_safe
from .protocol import Protocol
from .registry import Registries
from .results import SCHEMA_VERSION, CellKey, record_path, write_record
from .stages import STAGES_DIRNAME, StageStore
from .train import AdversarialTarget, train


@dataclass
class RunRequest:
    dataset: str
    protocol: Protocol
    method: str | None = None
    compressed_file: Path | None = None
    budget: int | None = None
    model: str | None = None
    norms: tuple[str, ...] = ("linf",)
    seeds: tuple[int, ...] = (0,)
    data_root: Path | None = None
    download: bool = False
    results_dir: Path = Path("results")
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool | None = None


@dataclass
class Resolved:
    """Names looked up and validated before any data is loaded (typos fail fast)."""

    dataset: DatasetSpec
    model_name: str
    build_model: Callable[..., torch.nn.Module]
    attacks: list[AttackSpec]
    method_name: str
    method: CompressionMethod | None
    compressed: CompressedSet | None
    budget: int | None


def resolve(req: RunRequest, regs: Registries) -> Resolved:
    if (req.method is None) == (req.compressed_file is None):
        raise DcrobenchError("give exactly one of --method or --compressed")
    dataset = regs.datasets.get(req.dataset)
    model_name = req.model or req.protocol.model
    model_spec = regs.models.get(model_name)
    attacks = [regs.attacks.get(n) for n in ("pgd", *req.protocol.evaluation.attacks)]
    if req.method is not None:
        cls = regs.methods.get(req.method)
        method = cls(**req.protocol.method_params(req.method, cls.default_params))
        budget = req.budget if req.budget is not None else req.protocol.budget
        return Resolved(dataset, model_name, model_spec.build, attacks, req.method, method, None,
                        budget if cls.uses_budget else None)
    compressed = CompressedSet.load(req.compressed_file)
    name = f"file:{Path(req.compressed_file).stem}"
    return Resolved(dataset, model_name, model_spec.build, attacks, name, None, compressed,
                    compressed.meta.get("budget"))


def build_model(res: Resolved, protocol: Protocol, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    ds = res.dataset
    return res.build_model(ds.channels, ds.size, ds.num_classes, ds.mean, ds.std, **protocol.model_params)


def compress(res: Resolved, train_set: ImageSet, seed: int, device: torch.device) -> CompressedSet:
    if res.compressed is not None:
        fp = res.compressed.meta.get("data_fingerprint")
        if fp and fp != train_set.fingerprint():
            raise MethodError(f"the compressed set was made from a different training set than '{train_set.name}' "
                              f"(fingerprint {fp} vs {train_set.fingerprint()})")
        return res.compressed
    assert res.method is not None
    out = res.method.run(train_set, res.budget or 0, seed, device)
    out.meta.setdefault("dataset", train_set.name)
    out.meta.setdefault("data_fingerprint", train_set.fingerprint())
    out.meta.setdefault("budget", res.budget)
    out.meta.setdefault("seed", seed)
    return out


def adversarial_radius(compressed: CompressedSet, protocol: Protocol, norm: str, eps: float) -> tuple[torch.Tensor, dict]:
    """Per-sample training radius: eps, or eps + eta of the sample's class (Def. 5) when asked and meaningful."""
    n = len(compressed)
    base = torch.full((n,), eps)
    info: dict[str, Any] = {"radius": "eps", "weighted": compressed.weights is not None}
    eta = compressed.meta.get("eta_per_class")
    if protocol.adversarial.weighted_radius == "eps+eta":
        if eta is None:
            info["note"] = "method reports no eta; trained with eps"
        elif compressed.meta.get("metric", "l2") != norm:
            info["note"] = f"eta measured in {compressed.meta.get('metric')} but attack norm is {norm}; trained with eps"
        else:
            eta_t = torch.as_tensor(eta, dtype=torch.float32)
            base = base + eta_t[compressed.labels.cpu()]
            info["radius"] = "eps+eta"
    return base, info


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def environment(device: torch.device) -> dict[str, Any]:
    env = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
           "platform": platform.platform(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def cell_key(req: RunRequest, res: Resolved, norm: str, seed: int) -> CellKey:
    p = req.protocol
    return CellKey(p.name, p.version, p.hash_for(res.method_name), res.method_name, res.dataset.name, res.budget, res.model_name, norm, seed)


def compress_key(res: Resolved, train_set: ImageSet, seed: int) -> str:
    if res.compressed is not None:
        return StageStore.key("compress", "file", res.compressed.meta, train_set.fingerprint())
    m = res.method
    assert m is not None
    return StageStore.key("compress", m.name, m.version, json_safe(m.params), train_set.fingerprint(), res.budget,
                          seed if m.uses_seed else None)


def run(req: RunRequest, regs: Registries, log: Callable[[str], None] = print,
        store: StageStore | None = None) -> list[dict[str, Any]]:
    """Run every missing (norm, seed) cell; returns all records of the request, old and new.

    Each stage (compress, train standard, train adversarial, attack) comes from ``store`` when it
    was computed before, so an interrupted run resumes where it stopped.
    """
    import json

    res = resolve(req, regs)
    p = req.protocol
    store = store if store is not None else StageStore(Path(req.results_dir) / STAGES_DIRNAME)
    records: list[dict[str, Any]] = []
    todo: list[int] = []
    for seed in req.seeds:
        existing = [record_path(req.results_dir, cell_key(req, res, n, seed)) for n in req.norms]
        if all(path.exists() for path in existing):
            records += [json.loads(path.read_text()) for path in existing]
            log(f"seed {seed}: already recorded, skipped")
        else:
            todo.append(seed)
    if not todo:
        return records

    train_set, test_set = load_dataset(res.dataset, req.data_root, req.download)
    test_eval = stratified_subset(test_set, p.evaluation.test_subset)
    settings = p.train_for(res.method_name)
    model_id = (res.model_name, json_safe(p.model_params))
    attack_names = [a.name for a in res.attacks]

    def evaluate(model_key: str, model_loader: Callable[[], torch.nn.Module], norm: str, eps: float, seed: int) -> dict:
        key = StageStore.key("attack", model_key, norm, eps, json_safe(p.evaluation), attack_names,
                             test_eval.fingerprint(), seed)
        return store.evaluation(key, lambda: evaluate_robustness(
            model_loader(), test_eval.images, test_eval.labels, norm=norm, eps=eps, attacks=res.attacks,
            settings=p.evaluation, seed=seed, device=req.device))

    for seed in todo:
        ckey = compress_key(res, train_set, seed)
        cache_compressed = res.method is not None and res.method.cache_stage
        comp = store.compressed(ckey, lambda: compress(res, train_set, seed, req.device), store=cache_compressed)

        std_key = StageStore.key("standard", ckey, model_id, json_safe(settings), seed)
        std_model = _lazy(lambda: store.model(
            std_key, lambda: build_model(res, p, seed).to(req.device),
            lambda m: train(m, comp.images, comp.labels, settings, weights=comp.weights, seed=seed,
                            device=req.device, progress=req.progress, desc=f"standard s{seed}")))

        for norm in req.norms:
            key = cell_key(req, res, norm, seed)
            if record_path(req.results_dir, key).exists():
                continue
            eps = p.eps(res.dataset.name, norm, res.dataset.input_dim)
            std_eval = evaluate(std_key, lambda: std_model()[0], norm, eps, seed)

            radius, adv_info = adversarial_radius(comp, p, norm, eps)
            eta = comp.meta.get("eta_per_class") if adv_info["radius"] == "eps+eta" else None
            adv_key = StageStore.key("adversarial", ckey, model_id, json_safe(settings), json_safe(p.adversarial),
                                     norm, eps, adv_info["radius"], eta, seed)
            adv_model = _lazy(lambda: store.model(
                adv_key, lambda: build_model(res, p, seed).to(req.device),
                lambda m: train(m, comp.images, comp.labels, settings, weights=comp.weights,
                                adversarial=AdversarialTarget(norm, radius, p.adversarial), seed=seed,
                                device=req.device, progress=req.progress, desc=f"adversarial {norm} s{seed}")))
            adv_eval = evaluate(adv_key, lambda: adv_model()[0], norm, eps, seed)

            diagnostics = res.method.diagnostics(comp, eps=eps, norm=norm) if res.method is not None else {}
            train_s = _stage_seconds(std_key, std_model, store) + _stage_seconds(adv_key, adv_model, store)
            record = make_record(req, res, comp, key, eps, std_eval, adv_eval, adv_info, diagnostics, {
                "compress_s": float(comp.meta.get("compress_s", 0.0)), "train_s": train_s,
                "eval_s": std_eval.pop("eval_s", 0.0) + adv_eval.pop("eval_s", 0.0),
                "peak_mem_mb": peak_memory_mb(req.device)})
            path = write_record(req.results_dir, key, record)
            records.append(record)
            log(f"seed {seed} {norm}: standard score {record['scores']['standard']:.4f}, "
                f"robust score {record['scores']['robust']:.4f} -> {path}")
    return records


def _lazy(make: Callable[[], Any]) -> Callable[[], Any]:
    """Compute on first call only (a model whose evaluations are all cached is never loaded)."""
    box: list[Any] = []

    def get() -> Any:
        if not box:
            box.append(make())
        return box[0]

    get.done = lambda: bool(box)  # type: ignore[attr-defined]
    return get


def _stage_seconds(key: str, lazy_model: Callable[[], Any], store: StageStore) -> float:
    """Training seconds of a model stage (from its stored metadata when it was trained earlier)."""
    if lazy_model.done():  # type: ignore[attr-defined]
        return float(lazy_model()[1].get("train_s", 0.0))
    return float(store.model_meta(key).get("train_s", 0.0))


def make_record(req: RunRequest, res: Resolved, comp: CompressedSet, key: CellKey, eps: float,
                std_eval: dict, adv_eval: dict, adv_info: dict, diagnostics: dict, cost: dict) -> dict[str, Any]:
    p = req.protocol
    # params and counts have their own fields, time spent is under "cost"
    meta = json_safe({k: v for k, v in comp.meta.items() if k not in ("params", "per_class_counts", "compress_s")})
    return {
        "schema_version": SCHEMA_VERSION,
        "dcrobench_version": __version__,
        "protocol": {"name": p.name, "version": p.version, "hash": key.protocol_hash},
        "method": {"name": res.method_name, "version": comp.meta.get("method_version", ""),
                   "kind": comp.meta.get("kind", ""), "params": comp.meta.get("params", {}),
                   "source": str(req.compressed_file) if req.compressed_file else "registry"},
        "dataset": res.dataset.name,
        "budget": {"ipc": res.budget, "per_class_counts": comp.per_class_counts(res.dataset.num_classes),
                   "total": len(comp), "weighted": comp.weights is not None},
        "model": res.model_name,
        "norm": key.norm,
        "eps": eps,
        "seed": key.seed,
        "scores": {"standard": std_eval["clean_acc"], "robust": adv_eval["robust_acc"]},
        "standard": std_eval,
        "adversarial": adv_eval,
        "adversarial_training": adv_info,
        "compression": meta,
        "diagnostics": diagnostics,
        "cost": cost,
        "env": environment(req.device),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
