"""The life of one ``dcrobench run``: compress -> train (standard, adversarial) -> attack -> record."""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import logging
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .attacks import ConfiguredAttack, attack_members, configure_attacks, evaluate_robustness
from .datasets import DatasetSpec, load_dataset, stratified_subset
from .cache import cache_root
from .costs import StageCost
from .errors import DataValidationError, DcrobenchError, MethodError, ProtocolError
from .fileio import claim, ensure_writable_dir
from .imageset import ImageSet
from .methods import CompressedSet, CompressionMethod, Provenance, json_safe, validate_compressed
from .models import ModelSpec
from .names import unknown_name_message
from .protocol import Protocol
from .registry import Registries
from .results import SCHEMA_VERSION, Budget, CellKey, Evaluation, MethodRef, ProtocolRef, Record, Scores, read_record, \
    record_path, safe_name, write_record
from .stages import STAGES_DIRNAME, StageStore
from .train import AdversarialTarget, train
from .validation import record_errors

logger = logging.getLogger("dcrobench")


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
    save_models: Path | None = None  # export every trained model here (dcrobench.export)


@dataclass
class RunSetup:
    """Names looked up and validated before any data is loaded (typos fail fast)."""

    dataset: DatasetSpec
    model_name: str
    build_model: Callable[..., torch.nn.Module]
    attacks: list[ConfiguredAttack]
    method_name: str
    method: CompressionMethod | None
    compressed: CompressedSet | None
    budget: int | None
    #: distribution that provided the method ({distribution, version, plugin})
    source: dict[str, str] = field(default_factory=dict)
    #: ``evaluation.extra_attacks``, configured (each runs on its own, reported per attack)
    extra_attacks: list[ConfiguredAttack] = field(default_factory=list)

    @property
    def blocks(self) -> tuple[str, ...]:
        """The shared protocol blocks the method takes (a saved set takes none): part of its records' hash."""
        return tuple(self.method.protocol_blocks) if self.method is not None else ()

    @property
    def needs_surrogate(self) -> bool:
        return any(a.spec.needs_surrogate for a in [*self.attacks, *self.extra_attacks])


def resolve(req: RunRequest, regs: Registries) -> RunSetup:
    if (req.method is None) == (req.compressed_file is None):
        raise DcrobenchError("give exactly one of --method or --compressed")
    if req.compressed_file is not None and req.budget is not None:
        raise DcrobenchError("--budget goes with --method only: a saved set keeps the budget it was made for")
    dataset = regs.datasets.get(req.dataset)
    model_name = req.model or req.protocol.model
    model_spec = regs.models.get(model_name)
    check_model_params(model_spec, req.protocol.model_params)
    ev = req.protocol.evaluation
    configured = configure_attacks(ev.attacks + ev.extra_attacks, req.protocol.attacks, regs.attacks.get)
    headline = set(attack_members(ev.attacks, regs.attacks.get))
    attacks = [a for a in configured if a.name in headline]
    extra_attacks = [a for a in configured if a.name not in headline]
    if req.method is not None:
        cls = regs.methods.get(req.method)
        method = cls(**req.protocol.method_params(req.method, cls.protocol_blocks))
        budget = req.budget if req.budget is not None else req.protocol.budget
        return RunSetup(dataset, model_name, model_spec.build, attacks, req.method, method, None,
                        budget if cls.uses_budget else None, source=_origin(regs, req.method),
                        extra_attacks=extra_attacks)
    compressed, name, budget = load_compressed_file(Path(req.compressed_file), dataset)
    return RunSetup(dataset, model_name, model_spec.build, attacks, name, None, compressed, budget,
                    source=_file_source(compressed.provenance.source), extra_attacks=extra_attacks)


#: what every model builder is called with before the protocol's model_params (see dcrobench.models)
BUILDER_ARGUMENTS = 5  # channels, size, num_classes, mean, std


def check_model_params(spec: ModelSpec, params: dict[str, Any]) -> None:
    """Refuse a model_params key the model's builder does not take, before any data is loaded (the builder
    would raise TypeError in the middle of the run)."""
    try:
        parameters = list(inspect.signature(spec.build).parameters.values())
    except (TypeError, ValueError):  # no signature to check against
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    allowed = [p.name for p in parameters[BUILDER_ARGUMENTS:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in params:
        if key not in allowed:
            raise ProtocolError(f"model_params of model '{spec.name}': {unknown_name_message('parameter', key, allowed)}")


def _origin(regs: Registries, method: str) -> dict[str, str]:
    return regs.methods.origin(method).as_dict()


def _file_source(src: Any) -> dict[str, str]:
    if isinstance(src, dict) and all(isinstance(src.get(k), str) for k in ("distribution", "version", "plugin")):
        return {k: src[k] for k in ("distribution", "version", "plugin")}
    return {"distribution": "unknown", "version": "", "plugin": ""}


def load_compressed_file(path: Path, dataset: DatasetSpec) -> tuple[CompressedSet, str, int | None]:
    """A saved set, validated against the dataset before any work; named by its maker and its content.

    Returns the set, its record name (``herding (file 3fa2c1d0)``: the method from the metadata,
    the hash from the tensors) and the budget it was made for.
    """
    comp = CompressedSet.load(path)

    def bad(why: str) -> MethodError:
        return MethodError(f"compressed-set file {path}: {why}")

    prov = comp.provenance
    if prov is None:
        missing = [k for k in Provenance.REQUIRED if not isinstance(comp.meta.get(k), str) or not comp.meta.get(k)]
        raise bad(f"metadata lacks {', '.join(missing)} (files written by `dcrobench compress` carry them)")
    if prov.dataset != dataset.name:
        raise bad(f"it was made from dataset '{prov.dataset}', not '{dataset.name}'")
    budget = prov.budget
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise bad(f"metadata budget must be a positive integer or null, got {budget!r}")
    try:
        validate_compressed(comp, (dataset.channels, dataset.size, dataset.size), dataset.num_classes, budget=budget)
    except DataValidationError as exc:
        raise bad(str(exc)) from None
    problems = prov.problems(torch.bincount(comp.labels.long(), minlength=dataset.num_classes).tolist())
    if problems:
        raise bad(f"metadata {problems[0]}")
    comp.images, comp.labels = comp.images.float(), comp.labels.long()
    if comp.weights is not None:
        comp.weights = comp.weights.float()
    return comp, f"{prov.method} (file {comp.content_hash()[:8]})", budget


def build_model(res: RunSetup, protocol: Protocol, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    ds = res.dataset
    return res.build_model(ds.channels, ds.size, ds.num_classes, ds.mean, ds.std, **protocol.model_params)


def protocol_data(dataset: DatasetSpec, protocol: Protocol, root: Path | None,
                  download: bool) -> tuple[ImageSet, ImageSet]:
    """(training set, test points) exactly as a run of ``protocol`` uses them: the whole training split (what
    methods compress) and the protocol's fixed class-stratified ``evaluation.test_subset`` of the test split
    (what every attack is evaluated on; a record's ``test_fingerprint`` is its fingerprint)."""
    train_set, test_set = load_dataset(dataset, root, download)
    return train_set, stratified_subset(test_set, protocol.evaluation.test_subset)


def compress(res: RunSetup, train_set: ImageSet, seed: int, device: torch.device,
             progress: bool | None = None) -> CompressedSet:
    if res.compressed is not None:
        return res.compressed
    assert res.method is not None
    return res.method.run(train_set, res.budget or 0, seed, device, progress=progress, source=res.source)


def check_saved_set(comp: CompressedSet, train_set: ImageSet, path: Path | str | None) -> None:
    """A saved set against the training set this run would use, before any stage: made from it, and called
    "full" (no budget) only when it is that whole set."""
    fp = comp.provenance.data_fingerprint
    if fp != train_set.fingerprint():
        raise MethodError(f"the compressed set was made from a different training set than '{train_set.name}' "
                          f"(fingerprint {fp} vs {train_set.fingerprint()})")
    if comp.provenance.budget is None and len(comp) != len(train_set):
        raise MethodError(f"compressed-set file {path}: metadata budget null says it is the full training set, but it "
                          f"holds {len(comp)} of its {len(train_set)} images")


def check_stored_set(res: RunSetup, train_set: ImageSet, comp: CompressedSet) -> None:
    """What a method's own output is checked for (``CompressionMethod.run``), asked again of a stored compress
    stage before it is used: a stage that fails is recomputed instead of crashing every re-run."""
    method = res.method
    if method is None:
        return
    if comp.provenance is None or comp.provenance.method != method.name:
        raise DataValidationError(f"it does not describe a set made by '{method.name}'")
    method.check_output(comp, train_set, res.budget)


def adversarial_radius(compressed: CompressedSet, protocol: Protocol, norm: str, eps: float) -> tuple[torch.Tensor, dict]:
    """Per-sample training radius: eps, or eps plus the set's own extra radius (Def. 5) when asked and meaningful."""
    n = len(compressed)
    base = torch.full((n,), eps)
    info: dict[str, Any] = {"radius": "eps", "weighted": compressed.weights is not None}
    if protocol.adversarial.weighted_radius == "eps+eta":
        if compressed.extra_radius is None:
            info["note"] = "method reports no eta; trained with eps"
        elif compressed.extra_radius_norm != norm:
            info["note"] = f"eta measured in {compressed.extra_radius_norm} but attack norm is {norm}; trained with eps"
        else:
            base = base + compressed.extra_radius.float().cpu()
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


def cell_key(req: RunRequest, res: RunSetup, norm: str, seed: int) -> CellKey:
    p = req.protocol
    return CellKey(p.name, p.version, p.hash_for(res.method_name, res.blocks), res.method_name, res.dataset.name, res.budget, res.model_name, norm, seed)


def compress_key(res: RunSetup, train_set: ImageSet, seed: int) -> str:
    if res.compressed is not None:  # a saved set is what its tensors are, whatever its metadata says
        return StageStore.key("compress", "file", res.compressed.content_hash(), train_set.fingerprint())
    m = res.method
    assert m is not None
    return StageStore.key("compress", m.name, m.version, json_safe(m.params), train_set.fingerprint(), res.budget,
                          seed if m.uses_seed else None)


def check_writable(req: RunRequest) -> None:
    """Refuse unwritable output folders before any stage is computed."""
    ensure_writable_dir(req.results_dir, "results folder")
    ensure_writable_dir(cache_root(), "cache folder (DCROBENCH_CACHE)")
    if req.save_models is not None:
        ensure_writable_dir(req.save_models, "model folder (--save-models)")


def run(req: RunRequest, regs: Registries, log: Callable[[str], None] | None = None,
        store: StageStore | None = None) -> list[Record]:
    """Run every missing (norm, seed) cell; returns all records of the request, old and new.

    Each stage (compress, train standard, train adversarial, attack) comes from ``store`` when it
    was computed before, so an interrupted run resumes where it stopped. ``log`` gets one line per
    stage (default: the ``dcrobench`` logger at INFO). With ``req.save_models`` the trained models of
    every cell, recorded before or not, are exported there (:mod:`dcrobench.export`). The missing cells
    are claimed first (:func:`dcrobench.fileio.claim`): a cell that another process is computing is
    refused at once (AlreadyRunningError), before any work.
    """
    log = log or logger.info
    res = resolve(req, regs)
    store = store if store is not None else StageStore(Path(req.results_dir) / STAGES_DIRNAME, warn=logger.warning)
    records: list[Record] = []
    todo: list[int] = []
    set_hash = res.compressed.content_hash() if res.compressed is not None else None
    for seed in req.seeds:
        keys = [cell_key(req, res, n, seed) for n in req.norms]
        existing = [record_path(req.results_dir, key) for key in keys]
        if all(path.exists() for path in existing) and req.save_models is None:
            records += [_read_own_record(path, key, set_hash) for path, key in zip(existing, keys)]
            log(f"{res.method_name} seed {seed}: already recorded, skipped")
        else:
            todo.append(seed)
    if not todo:
        return records
    check_writable(req)
    with contextlib.ExitStack() as claims:
        for path in missing_records(req, res, todo):
            claims.enter_context(claim(path))
        return records + compute_cells(req, regs, res, store, todo, log)


def missing_records(req: RunRequest, res: RunSetup, seeds: list[int]) -> list[Path]:
    """The record paths of the cells of ``seeds`` that have no record yet."""
    paths = [record_path(req.results_dir, cell_key(req, res, norm, seed)) for seed in seeds for norm in req.norms]
    return [path for path in paths if not path.exists()]


def compute_cells(req: RunRequest, regs: Registries, res: RunSetup, store: StageStore, todo: list[int],
                  log: Callable[[str], None]) -> list[Record]:
    """The records of every (norm, seed) cell of the seeds ``todo``: read back when they exist, else computed
    (each stage from ``store`` when it was computed before) and written."""
    p = req.protocol
    records: list[Record] = []
    train_set, test_eval = protocol_data(res.dataset, p, req.data_root, req.download)
    if res.compressed is not None:
        check_saved_set(res.compressed, train_set, req.compressed_file)
    set_hash = res.compressed.content_hash() if res.compressed is not None else None
    settings = p.train_for(res.method_name)
    model_id = (res.model_name, json_safe(p.model_params))
    ev = p.evaluation
    budget = "full" if res.budget is None else f"b{res.budget}"
    started = time.perf_counter()

    def stage_line(seed: int, what: str, cost: StageCost) -> None:
        how = "loaded from the stage cache" if cost.cached else "computed"
        log(f"{res.method_name} {res.dataset.name} {budget} {res.model_name} s{seed} · {what}: {how} "
            f"({cost.seconds:.1f} s; {time.perf_counter() - started:.0f} s elapsed)")

    surrogates: dict[tuple[str, int], ModelStage] = {}

    def surrogate(norm: str, eps: float, seed: int) -> ModelStage | None:
        if not res.needs_surrogate:
            return None
        if (norm, seed) not in surrogates:
            surrogates[(norm, seed)] = surrogate_stage(req, regs, res, train_set, store, norm, eps, seed,
                                                       lambda cost: stage_line(seed, f"train surrogate {norm}", cost))
        return surrogates[(norm, seed)]

    def attack_stage(stage: ModelStage, norm: str, eps: float, seed: int, attacks: list[ConfiguredAttack],
                     mode: str) -> tuple[dict, StageCost]:
        sur = surrogate(norm, eps, seed) if any(a.spec.needs_surrogate for a in attacks) else None
        key = StageStore.key("attack", stage.key, norm, eps, [a.key() for a in attacks], mode, ev.batch_size,
                             test_eval.fingerprint(), seed, *([sur.key] if sur is not None else []))
        # the surrogate is trained (or loaded) with the model, outside the attack's timing: its cost is its own
        result, cost = store.evaluation(
            key, lambda: (stage.model(), sur.model() if sur is not None else None),
            lambda models, checkpoint: evaluate_robustness(
                models[0], test_eval.images, test_eval.labels, norm=norm, eps=eps, attacks=attacks, mode=mode,
                batch_size=ev.batch_size, seed=seed, device=req.device, checkpoint=checkpoint, progress=req.progress,
                surrogate=models[1]))
        return result, cost

    def evaluate(stage: ModelStage, norm: str, eps: float, seed: int,
                 multiple: float | None = None) -> tuple[Evaluation, StageCost]:
        result, cost = attack_stage(stage, norm, eps, seed, res.attacks, ev.mode)
        # an eps_sweep radius names itself: "attack adversarial model linf ×0.5 (ε 0.05, 100 test points)"
        where = f"{norm} (" if multiple is None else f"{norm} ×{multiple:g} (ε {eps:.4g}, "
        stage_line(seed, f"attack {stage.kind} model {where}{test_eval.images.shape[0]} test points)", cost)
        # test_fingerprint: the points the flags refer to
        return Evaluation.from_json({**result, "test_fingerprint": test_eval.fingerprint()}), cost

    def with_extra_attacks(stage: ModelStage, at_eps: Evaluation, cost: StageCost, norm: str, eps: float,
                           seed: int) -> tuple[Evaluation, StageCost]:
        """``at_eps`` with the protocol's extra attacks, each on every clean-correct point."""
        result, extra_cost = attack_stage(stage, norm, eps, seed, res.extra_attacks, "independent")
        stage_line(seed, f"extra attacks {stage.kind} model {norm} ({', '.join(result['attacks'])})", extra_cost)
        total = StageCost(cost.seconds + extra_cost.seconds, cached=cost.cached and extra_cost.cached)
        return merge_extra_attacks(at_eps, result, in_score=ev.extra_in_score), total

    def robustness_curve(stage: ModelStage, at_eps: Evaluation, cost: StageCost, norm: str, eps: float,
                         seed: int) -> tuple[Evaluation, StageCost]:
        """``at_eps`` with its ``eps_curve``: the model attacked at every multiple of ``eps`` the protocol names."""
        curve, seconds, cached = [], cost.seconds, cost.cached
        for m in ev.eps_sweep:
            if m == 1.0:
                acc = at_eps.robust_acc
            else:
                other, other_cost = evaluate(stage, norm, m * eps, seed, m)
                acc, seconds, cached = other.robust_acc, seconds + other_cost.seconds, cached and other_cost.cached
            curve.append({"multiple": m, "eps": m * eps, "robust_acc": acc})
        return replace(at_eps, eps_curve=curve), StageCost(seconds, cached=cached)

    for seed in todo:
        ckey = compress_key(res, train_set, seed)
        cache_compressed = res.method is not None and res.method.cache_stage
        comp, comp_cost = store.compressed(ckey, lambda: compress(res, train_set, seed, req.device, req.progress),
                                           store=cache_compressed, check=lambda comp: check_stored_set(res, train_set, comp))
        if res.compressed is not None:  # a saved set: made elsewhere, its cost is the one it records
            comp_cost = StageCost(comp_cost.seconds, cached=True)
        stage_line(seed, f"compress ({len(comp)} images)", comp_cost)

        std = ModelStage(store, StageStore.key("standard", ckey, model_id, settings.content(), seed), "standard",
                         lambda: build_model(res, p, seed).to(req.device),
                         lambda m: train(m, comp.images, comp.labels, settings, weights=comp.weights, seed=seed,
                                         device=req.device, progress=req.progress, desc=f"standard s{seed}"),
                         on_ready=lambda cost: stage_line(seed, "train standard", cost))
        if req.save_models is not None:
            export_model(req, res, comp, std, seed, norm=None, eps=None, adv_info=None)

        for norm in req.norms:
            key = cell_key(req, res, norm, seed)
            path = record_path(req.results_dir, key)
            if path.exists() and req.save_models is None:
                records.append(_read_own_record(path, key, set_hash))
                continue
            eps = p.eps(res.dataset.name, norm, res.dataset.input_dim)
            radius, adv_info = adversarial_radius(comp, p, norm, eps)
            eta = comp.extra_radius.tolist() if adv_info["radius"] == "eps+eta" else None
            adv = adversarial_stage(req, res, store, ckey, seed, norm, eps, lambda: (comp, radius), adv_info["radius"],
                                    eta, lambda cost: stage_line(seed, f"train adversarial {norm}", cost))
            if req.save_models is not None:
                export_model(req, res, comp, adv, seed, norm=norm, eps=eps, adv_info=adv_info)
            if path.exists():
                records.append(_read_own_record(path, key, set_hash))
                continue
            std_eval, std_eval_cost = evaluate(std, norm, eps, seed)
            adv_eval, adv_eval_cost = evaluate(adv, norm, eps, seed)
            if res.extra_attacks:
                std_eval, std_eval_cost = with_extra_attacks(std, std_eval, std_eval_cost, norm, eps, seed)
                adv_eval, adv_eval_cost = with_extra_attacks(adv, adv_eval, adv_eval_cost, norm, eps, seed)
            if ev.eps_sweep:
                adv_eval, adv_eval_cost = robustness_curve(adv, adv_eval, adv_eval_cost, norm, eps, seed)

            std_cost, adv_cost = std.cost(), adv.cost()
            measured = Measurement(
                eps=eps, standard=std_eval, adversarial=adv_eval, adversarial_training=adv_info,
                diagnostics=res.method.diagnostics(comp, eps=eps, norm=norm) if res.method is not None else {},
                cost={"compress_s": comp_cost.seconds, "proxy_s": float(comp.provenance.proxy_s),
                      "train_s": std_cost.seconds + adv_cost.seconds,
                      "eval_s": std_eval_cost.seconds + adv_eval_cost.seconds,
                      "surrogate_s": surrogates[(norm, seed)].cost().seconds if (norm, seed) in surrogates else 0.0,
                      "peak_mem_mb": peak_memory_mb(req.device),
                      "cached": {"compress": comp_cost.cached, "standard": std_cost.cached,
                                 "adversarial": adv_cost.cached,
                                 "attack": std_eval_cost.cached and adv_eval_cost.cached}})
            record = make_record(res, comp, key, measured, req.device)
            problems = record_errors(record.to_json())
            if problems:  # never publish a record the leaderboard would refuse
                raise DcrobenchError(f"{key.method} seed {seed} {norm}: the record is invalid: {problems[0]}")
            path = write_record(req.results_dir, record)
            records.append(record)
            log(f"seed {seed} {norm}: standard score {record.scores.standard:.4f}, "
                f"robust score {record.scores.robust:.4f} -> {path}")
    return records


def merge_extra_attacks(at_eps: Evaluation, result: dict[str, Any], *, in_score: bool) -> Evaluation:
    """The evaluation with ``extra_attacks`` from an independent-mode ``result``; with ``in_score`` the
    extra attacks also join ``attacks`` and the flags, so ``robust_acc`` is the worst case over them too."""
    extra = {"mode": "independent", "attacks": result["attacks"], "flags": result["flags"], "in_score": in_score}
    if result.get("minimal_perturbation"):
        extra["minimal_perturbation"] = result["minimal_perturbation"]
    merged = replace(at_eps, extra_attacks=extra)
    if not in_score:
        return merged
    joined = {k: v for k, v in result["flags"].items() if k not in ("encoding", "clean")}
    merged = replace(merged, attacks={**at_eps.attacks, **result["attacks"]}, flags={**at_eps.flags, **joined},
                     minimal_perturbation={**(at_eps.minimal_perturbation or {}),
                                           **result.get("minimal_perturbation", {})} or None)
    return replace(merged, robust_acc=int(merged.point_flags("robust").sum()) / merged.n)


def adversarial_stage(req: RunRequest, setup: RunSetup, store: StageStore, ckey: str, seed: int, norm: str,
                      eps: float, data: Callable[[], tuple[CompressedSet, torch.Tensor]], radius_kind: str,
                      eta: list[float] | None, on_ready: Callable[[StageCost], None]) -> ModelStage:
    """The adversarially trained model of ``setup``'s method on the compressed set with stage key ``ckey``;
    ``data()`` gives the set and the per-sample training radius (called only when the stage is not cached)."""
    p = req.protocol
    settings = p.train_for(setup.method_name)
    model_id = (setup.model_name, json_safe(p.model_params))

    def fit(model: torch.nn.Module) -> dict:
        comp, radius = data()
        return train(model, comp.images, comp.labels, settings, weights=comp.weights,
                     adversarial=AdversarialTarget(norm, radius, p.adversarial), seed=seed, device=req.device,
                     progress=req.progress, desc=f"adversarial {norm} s{seed}")

    key = StageStore.key("adversarial", ckey, model_id, settings.content(), json_safe(p.adversarial.for_norm(norm).content()), norm, eps,
                         radius_kind, eta, seed)
    return ModelStage(store, key, "adversarial", lambda: build_model(setup, p, seed).to(req.device), fit,
                      on_ready=on_ready)


def surrogate_stage(req: RunRequest, regs: Registries, res: RunSetup, train_set: ImageSet, store: StageStore,
                    norm: str, eps: float, seed: int, on_ready: Callable[[StageCost], None]) -> ModelStage:
    """The transfer attacks' surrogate: the full-data adversarially trained model of the same protocol
    cell (architecture, norm, eps, seed): the very stage a ``full`` run trains and caches."""
    cls = regs.methods.get("full")
    full = cls(**req.protocol.method_params("full", cls.protocol_blocks))
    setup = replace(res, method_name="full", method=full, compressed=None, budget=None)

    def data() -> tuple[CompressedSet, torch.Tensor]:
        comp = compress(setup, train_set, seed, req.device, req.progress)
        return comp, adversarial_radius(comp, req.protocol, norm, eps)[0]

    # the full set has no extra radius, so its stage is keyed by the plain radius eps
    return adversarial_stage(req, setup, store, compress_key(setup, train_set, seed), seed, norm, eps, data, "eps",
                             None, on_ready)


class ModelStage:
    """A training stage computed (or loaded) on first use: a model whose attacks are all cached is never built."""

    def __init__(self, store: StageStore, key: str, kind: str, build: Callable[[], torch.nn.Module],
                 fit: Callable[[torch.nn.Module], dict], on_ready: Callable[[StageCost], None] = lambda cost: None) -> None:
        self.store, self.key, self.kind, self._build, self._fit, self._on_ready = store, key, kind, build, fit, on_ready
        self._model: torch.nn.Module | None = None
        self._cost: StageCost | None = None

    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model, self._cost = self.store.model(self.key, self._build, self._fit)
            self._on_ready(self._cost)
        return self._model

    def cost(self) -> StageCost:
        """Training seconds (from the stored stage when this run did not need the model)."""
        if self._cost is None:
            meta = self.store.model_meta(self.key)
            self._cost = StageCost(float(meta.get("train_s", 0.0)), cached=True)
        return self._cost


def export_model(req: RunRequest, res: RunSetup, comp: CompressedSet, stage: ModelStage, seed: int, *,
                 norm: str | None, eps: float | None, adv_info: dict | None) -> Path:
    """Write one trained model of a cell to ``req.save_models`` (the standard model once per seed)."""
    from .export import save_model

    p, ds = req.protocol, res.dataset
    budget = "full" if res.budget is None else f"b{res.budget}"
    parts = [safe_name(res.method_name), ds.name, budget, res.model_name, *([norm] if norm else []), f"s{seed}",
             p.hash_for(res.method_name, res.blocks), stage.kind]
    path = Path(req.save_models) / ("_".join(parts) + ".safetensors")
    if path.exists() and path.with_suffix(".json").exists():
        return path
    spec = {"architecture": res.model_name, "model_params": json_safe(p.model_params),
            "input_shape": [ds.channels, ds.size, ds.size], "num_classes": ds.num_classes,
            "normalization": {"mean": list(ds.mean), "std": list(ds.std)},
            "inputs": "float pixels in [0, 1], NCHW; the model normalises inside",
            "training": stage.kind, "norm": norm, "eps": eps, "adversarial_training": adv_info, "seed": seed,
            "method": res.method_name, "dataset": ds.name, "budget": res.budget,
            "compressed_set": comp.content_hash(),
            "protocol": {"name": p.name, "version": p.version, "hash": p.hash_for(res.method_name, res.blocks)},
            "dcrobench_version": __version__, "torch": torch.__version__}
    save_model(stage.model(), path, spec)
    return path


@dataclass(frozen=True)
class Measurement:
    """What one (norm, seed) cell measured, before it becomes a record."""

    eps: float
    standard: Evaluation
    adversarial: Evaluation
    adversarial_training: dict[str, Any]
    diagnostics: dict[str, Any]
    cost: dict[str, Any]


def make_record(res: RunSetup, comp: CompressedSet, key: CellKey, measured: Measurement,
                device: torch.device) -> Record:
    prov = comp.provenance
    compression = json_safe({**comp.meta, **prov.recorded()})
    return Record(
        schema_version=SCHEMA_VERSION, dcrobench_version=__version__,
        protocol=ProtocolRef(key.protocol, key.protocol_version, key.protocol_hash),
        method=MethodRef(res.method_name, prov.method_version, prov.kind, prov.params, res.source),
        dataset=res.dataset.name,
        compressed_set={"content_hash": comp.content_hash(), "from_file": res.compressed is not None},
        budget=Budget(res.budget, comp.per_class_counts(res.dataset.num_classes), len(comp), comp.weights is not None),
        model=res.model_name, norm=key.norm, eps=measured.eps, seed=key.seed,
        scores=Scores(measured.standard.clean_acc, measured.adversarial.robust_acc),
        standard=measured.standard, adversarial=measured.adversarial,
        adversarial_training=measured.adversarial_training, compression=compression,
        diagnostics=measured.diagnostics, cost=measured.cost, env=environment(device),
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def _read_own_record(path: Path, key: CellKey, set_hash: str | None = None) -> Record:
    """The record found at a cell's path, used only when it is valid and names that very cell (and, for a
    saved set, that very set): anything else there is refused, never taken for this cell's result."""
    from .validation import record_errors

    rec, reason = read_record(path)
    if reason is not None:
        raise DcrobenchError(f"cannot read result record {path}: {reason}")
    problems = record_errors(rec)
    if problems:
        raise DcrobenchError(f"result record {path} is invalid ({problems[0]}): move it away to recompute the cell")
    found = CellKey.of_record(rec)
    if found != key:
        diff = ", ".join(f"{name} {getattr(found, name)!r} instead of {getattr(key, name)!r}"
                         for name in key.__dataclass_fields__ if getattr(found, name) != getattr(key, name))
        raise DcrobenchError(f"result record {path} is not this cell's record ({diff}): move it away to recompute the cell")
    record = Record.from_json(rec, str(path))
    if set_hash is not None:
        recorded = (rec.get("compressed_set") or {}).get("content_hash")
        if recorded != set_hash:
            raise DcrobenchError(f"result record {path} measured another compressed set ({str(recorded)[:8]}, not "
                                 f"{set_hash[:8]}): move it away to recompute the cell")
    return record
