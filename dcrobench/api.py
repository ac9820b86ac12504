"""The Python API: what the CLI does, callable from a notebook, with the same names, defaults and errors.

    import dcrobench
    records = dcrobench.run("random", "mnist5k", protocol="quick", seeds=1)
    df = dcrobench.load_results("results")
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas
    import torch

    from .methods import CompressedSet
    from .protocol import Protocol
    from .results import Record


def _protocol(protocol: str | Path | Protocol) -> Protocol:
    from .protocol import Protocol, load_protocol

    return protocol if isinstance(protocol, Protocol) else load_protocol(str(protocol))


def _refusing_to_overwrite(out: Path) -> Exception:
    from .errors import DcrobenchError

    return DcrobenchError(f"{out} exists; refusing to overwrite it")


def _new_file(out: str | Path | None) -> Path | None:
    """``out`` as a path to write, refused before any work when it exists or its folder is not writable."""
    from .fileio import ensure_writable_dir

    if out is None:
        return None
    out = Path(out)
    if out.exists():
        raise _refusing_to_overwrite(out)
    ensure_writable_dir(out.parent, "output folder")
    return out


def _save_new(comp: CompressedSet, out: Path | None) -> None:
    """Create ``out`` (when given): a file that appeared there while the set was being made is not replaced."""
    if out is None:
        return
    try:
        comp.save(out, new=True)
    except FileExistsError:
        raise _refusing_to_overwrite(out) from None


class _LineFormatter(logging.Formatter):
    """As the CLI prints them: stage lines bare, warnings and errors as ``warning: ...`` / ``error: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return prefix + record.getMessage()


@contextlib.contextmanager
def _stage_lines(progress: bool | None) -> Iterator[None]:
    """Print the ``dcrobench`` logger's stage lines (INFO) on stderr during the call, as the CLI does, unless
    ``progress`` is False or logging is configured already (a handler on the ``dcrobench`` logger or the root
    logger: then that configuration decides, e.g. ``logging.basicConfig(level=logging.INFO)``)."""
    logger = logging.getLogger("dcrobench")
    if progress is False or logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _norms(norms: str | Sequence[str]) -> tuple[str, ...]:
    return (norms,) if isinstance(norms, str) else tuple(norms) or ("linf",)


def run(method: str | None = None, dataset: str = "mnist5k", *, budget: int | None = None, model: str | None = None,
        protocol: str | Path | Protocol = "quick", norms: str | Sequence[str] = ("linf",), seeds: int | None = None,
        compressed: str | Path | None = None, results: str | Path = "results", device: str | None = None,
        threads: int | str | None = "auto", data_root: str | Path | None = None, download: bool = False,
        save_models: str | Path | None = None, progress: bool | None = None) -> list[Record]:
    """Compress, train (standard and adversarial), attack and record; like ``dcrobench run``.

    Give ``method`` (a name from ``dcrobench list methods``) or ``compressed`` (a file written by
    :func:`compress`). ``protocol`` is a built-in name, a YAML path or a :class:`~dcrobench.protocol.Protocol`;
    ``seeds`` is how many of the protocol's seeds to run (default: all). Cells already recorded under
    ``results`` are read back, not recomputed. ``save_models`` exports every trained model there
    (see :func:`load_model`). ``threads``: ``"auto"`` (the measured default), a number, or None (torch's).
    ``progress``: None (the default) prints the CLI's stage lines on stderr and draws bars on a terminal,
    True always draws the bars, False is silent; once ``logging`` is configured (a handler on the root or
    ``dcrobench`` logger), the stage lines go there instead (INFO on the ``dcrobench`` logger).

    Returns the :class:`~dcrobench.results.Record` of every requested (norm, seed) cell: ``r.scores.robust``,
    ``r.adversarial.attacks``, ``r.to_json()``. Errors are :class:`~dcrobench.errors.DcrobenchError` with the
    CLI's one-line messages.
    """
    from .device import resolve_device, set_threads
    from .registry import registries
    from .runner import RunRequest, run as run_cells

    dev = resolve_device(device)
    set_threads(threads, dev)
    proto = _protocol(protocol)
    req = RunRequest(dataset=dataset, protocol=proto, method=method,
                     compressed_file=Path(compressed) if compressed is not None else None, budget=budget, model=model,
                     norms=_norms(norms), seeds=tuple(proto.seed_list(seeds)),
                     data_root=Path(data_root) if data_root is not None else None, download=download,
                     results_dir=Path(results), device=dev, progress=progress,
                     save_models=Path(save_models) if save_models is not None else None)
    with _stage_lines(progress):
        return run_cells(req, registries())


def compress(method: str, dataset: str = "mnist5k", *, budget: int | None = None, seed: int = 0,
             protocol: str | Path | Protocol = "quick", out: str | Path | None = None, device: str | None = None,
             threads: int | str | None = "auto", data_root: str | Path | None = None, download: bool = False,
             progress: bool | None = None) -> CompressedSet:
    """Compress a dataset with one method under the protocol's parameters; like ``dcrobench compress``.

    Returns the :class:`~dcrobench.methods.CompressedSet` (images in [0, 1], labels, optional weights and
    indices); with ``out`` it is also written there (refusing to overwrite), ready for ``run(compressed=out)``.
    """
    from .datasets import load_dataset
    from .device import resolve_device, set_threads
    from .protocol import check_seeds
    from .registry import registries
    from .runner import RunRequest, compress as compress_set, resolve

    check_seeds(seed, "--seed")
    out = _new_file(out)
    _writable_cache()
    dev = resolve_device(device)
    set_threads(threads, dev)
    setup = resolve(RunRequest(dataset=dataset, protocol=_protocol(protocol), method=method, budget=budget, device=dev),
                    registries())
    train_set, _ = load_dataset(setup.dataset, Path(data_root) if data_root is not None else None, download)
    with _stage_lines(progress):
        comp = compress_set(setup, train_set, seed, dev, progress)
    _save_new(comp, out)
    return comp


def import_set(files: str | Path | Sequence[str | Path], *, fmt: str, dataset: str, name: str,
               out: str | Path | None = None, normalized: str | tuple[list[float], list[float]] | None = None,
               experiment: int = 0, data_root: str | Path | None = None, download: bool = False) -> CompressedSet:
    """Read a set distilled by other code (``fmt``: ``mtt``, ``dc`` or ``tensors``); like ``dcrobench import-set``.

    ``normalized``: the (mean, std) the images were normalised with, as lists, a ``"MEAN,STD"`` string or a
    preset name (``cifar10``, ``mnist``, ...); ``name``: the method label its records carry. Returns the
    validated :class:`~dcrobench.methods.CompressedSet`; with ``out`` it is also written there (never
    overwritten), ready for ``run(compressed=out)``.
    """
    from .datasets import load_dataset
    from .importing import import_set as read_set, parse_normalization
    from .registry import registries

    out = _new_file(out)
    _writable_cache()
    spec = registries().datasets.get(dataset)
    if isinstance(normalized, str) or normalized is None:
        normalized = parse_normalization(normalized, spec.channels)
    files = [files] if isinstance(files, (str, Path)) else list(files)
    train_set, _ = load_dataset(spec, Path(data_root) if data_root is not None else None, download)
    comp = read_set(files, fmt=fmt, train_set=train_set, name=name, normalized=normalized, experiment=experiment)
    _save_new(comp, out)
    return comp


def _writable_cache() -> None:
    """Methods and datasets cache what they compute: refuse an unwritable cache before any of it."""
    from .cache import cache_root
    from .fileio import ensure_writable_dir

    ensure_writable_dir(cache_root(), "cache folder (DCROBENCH_CACHE)")


def sweep(grid: str | Path, *, results: str | Path = "results", workers: int = 1, executor: str = "local",
          device: str | None = None, threads: int | str | None = "auto", progress: bool | None = None,
          ray_address: str | None = None) -> dict[str, Any]:
    """Run every missing cell of a grid file (``benchmarks/grids/``); like ``dcrobench sweep``.

    Returns the summary: tasks, already_done, ran, failed, failures (one dict per failed task, with its cell and
    error), stages computed and loaded. A failing task does not stop the others.
    """
    from .device import resolve_threads
    from .scheduler import load_grid, run_sweep

    with _stage_lines(progress):
        return run_sweep(load_grid(grid), Path(results), executor=executor, workers=workers, device=device,
                         threads=resolve_threads(threads, device), progress=progress,
                         log=logging.getLogger("dcrobench").info, ray_address=ray_address)


def load_results(folder: str | Path = "results") -> pandas.DataFrame:
    """Every valid record under ``folder`` as a DataFrame, one row per record.

    Columns: the cell (protocol, protocol_version, protocol_hash, method, kind, dataset, budget, model, norm, eps,
    seed), the scores (standard_score, robust_score), each model's clean and robust accuracy, each attack's accuracy
    (``adv_<attack>``, ``std_<attack>``; extra attacks ``adv_extra_<attack>``, ``std_extra_<attack>`` and minimal-
    perturbation medians ``adv_<attack>_median_perturbation``), the costs (compress_s, proxy_s, train_s, eval_s, peak_mem_mb), device,
    created_at and path. Invalid or duplicate records are left out with a warning on the ``dcrobench`` logger, as
    ``dcrobench leaderboard render`` leaves them out.
    """
    import pandas as pd

    from .errors import DcrobenchError
    from .validation import check_results

    folder = Path(folder)
    if not folder.is_dir():
        raise DcrobenchError(f"results folder {folder} does not exist")
    checked = check_results(folder)
    for line in checked.invalid_lines() + checked.duplicate_lines():
        logging.getLogger("dcrobench").warning("%s (left out)", line)
    rows = []
    for r in checked.records:
        k = r.key
        row: dict[str, Any] = {
            "protocol": k.protocol, "protocol_version": k.protocol_version, "protocol_hash": k.protocol_hash,
            "method": k.method, "kind": r.method.kind, "dataset": k.dataset, "budget": k.budget, "model": k.model,
            "norm": k.norm, "eps": r.eps, "seed": k.seed,
            "standard_score": r.scores.standard, "robust_score": r.scores.robust,
            "std_clean_acc": r.standard.clean_acc, "std_robust_acc": r.standard.robust_acc,
            "adv_clean_acc": r.adversarial.clean_acc, "adv_robust_acc": r.adversarial.robust_acc,
        }
        row.update({f"std_{a}": acc for a, acc in r.standard.attacks.items()})
        row.update({f"adv_{a}": acc for a, acc in r.adversarial.attacks.items()})
        for prefix, ev in (("std", r.standard), ("adv", r.adversarial)):  # evaluation.extra_attacks, each on its own
            extra = ev.extra_attacks or {}
            row.update({f"{prefix}_extra_{a}": acc for a, acc in extra.get("attacks", {}).items()})
            row.update({f"{prefix}_{a}_median_perturbation": size
                        for a, size in (extra.get("minimal_perturbation") or {}).items()})
        row.update({c: r.cost.get(c) for c in ("compress_s", "proxy_s", "train_s", "eval_s", "peak_mem_mb")})
        row.update({"device": r.env.get("device"), "created_at": r.created_at, "path": r.path})
        rows.append(row)
    return pd.DataFrame(rows)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A model exported by ``run(save_models=...)`` / ``dcrobench run --save-models``, as a plain
    ``torch.nn.Module`` in eval mode taking [0, 1] pixels (it normalises inside); ``path`` is its
    ``.safetensors`` or ``.json`` file. The spec (architecture, training, protocol) is in the ``.json``."""
    from .export import load_model as load

    return load(path, device)


SPLITS = ("train", "test")


def load_dataset(name: str, *, protocol: str | Path | Protocol = "quick", split: str = "test",
                 data_root: str | Path | None = None, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of a dataset's ``split`` exactly as ``protocol`` uses it: images float NCHW with
    pixels in [0, 1] (unnormalised; models normalise inside), labels int64. ``"test"`` is the protocol's fixed
    class-stratified ``evaluation.test_subset``, the very points a run attacks (the records'
    ``test_fingerprint``); ``"train"`` is the whole training split, what methods compress. With
    :func:`load_model`, enough to attack an exported model with any tool (README: From Python)."""
    from .errors import DcrobenchError
    from .names import unknown_name_message
    from .registry import registries
    from .runner import protocol_data

    if split not in SPLITS:
        raise DcrobenchError(unknown_name_message("split", split, SPLITS))
    spec = registries().datasets.get(name)
    train_set, test_set = protocol_data(spec, _protocol(protocol), Path(data_root) if data_root is not None else None,
                                        download)
    data = train_set if split == "train" else test_set
    return data.images, data.labels
