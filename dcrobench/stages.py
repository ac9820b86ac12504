"""Stage cache: compressed sets, trained models and attack results stored by content hash.

A run is four stages — compress, train standard, train adversarial, attack — and each is stored
under a key hashing everything that determines it. A crash, a kill or a new seed therefore redoes
only what is missing, and one compressed set serves every model and norm that shares it. Files are
written atomically and sealed (:mod:`dcrobench.cache`: the key and the sha256 of the bytes beside each
file), and a stage is used only when its seal matches and its content passes the run's checks: a file
that is damaged (disk full, a copy cut short), replaced, copied from another key or invalid is reported
once and recomputed.

Every stage comes back with its ``StageCost``: the seconds it took when it was computed, and
whether this run loaded it instead.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .cache import EntryMismatch, content_key, json_entry, read_entry, seal_path, torch_bytes, torch_entry, write_entry
from .attacks import EvalCheckpoint
from .costs import StageCost
from .errors import one_line
from .fileio import json_bytes
from .methods import CompressedSet

STAGES_DIRNAME = "_stages"
#: 4: every stage file sealed with its key and digest; 3: attack stages hold per-point flags and resume per
#: batch; 2: {"result", "seconds"}
STAGE_FORMAT = 4


class StageStore:
    def __init__(self, root: Path | None, warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self.warn = warn or (lambda message: None)
        self.computed: Counter[str] = Counter()
        self.loaded: Counter[str] = Counter()

    @staticmethod
    def key(kind: str, *parts: Any) -> str:
        return f"{kind}-{content_key(kind, STAGE_FORMAT, *parts)}"

    def _path(self, kind: str, key: str, ext: str) -> Path | None:
        return None if self.root is None else self.root / kind / f"{key}.{ext}"

    def report_damaged(self, path: Path, exc: BaseException) -> None:
        self.warn(f"stage file {path} cannot be used ({one_line(exc)}); recomputing it")

    def compressed(self, key: str, make: Callable[[], CompressedSet], store: bool = True,
                   check: Callable[[CompressedSet], None] | None = None) -> tuple[CompressedSet, StageCost]:
        """A compressed set, loaded when its stage file is sealed with ``key`` and passes ``check`` (raising
        for an invalid set), else made by ``make`` (which checks its own output) and stored."""
        path = self._path("compress", key, "pt") if store else None
        if path is not None and path.exists():
            try:
                comp = CompressedSet.from_file_object(io.BytesIO(read_entry(path, key)), path)
                if check is not None:
                    check(comp)
                self.loaded["compress"] += 1
                return comp, StageCost(float(comp.provenance.compress_s), cached=True)
            except Exception as exc:
                self.report_damaged(path, exc)
        comp = make()
        self.computed["compress"] += 1
        if path is not None:
            write_entry(path, key, torch_bytes(comp.payload()))
        return comp, StageCost(float(comp.provenance.compress_s), cached=False)

    def model(self, key: str, build: Callable[[], nn.Module], fit: Callable[[nn.Module], dict]) -> tuple[nn.Module, StageCost]:
        """A trained model: loaded from its sealed stage file or built and trained (``fit`` returns stats)."""
        kind = key.split("-", 1)[0]
        path = self._path("models", key, "pt")
        model = build()
        meta = self.model_meta(key)
        if meta and path is not None:
            try:
                device = next(model.parameters()).device
                state = torch_entry(path, key, map_location=device)
                model.load_state_dict(state)
                if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
                    raise EntryMismatch("its weights are not all finite")
                self.loaded[kind] += 1
                return model.eval(), StageCost(float(meta["train_s"]), cached=True)
            except Exception as exc:
                self.report_damaged(path, exc)
                model = build()
        start = time.perf_counter()
        stats = fit(model)
        meta = {**stats, "train_s": time.perf_counter() - start}
        self.computed[kind] += 1
        if path is not None:
            write_entry(path, key, torch_bytes({k: v.detach().cpu() for k, v in model.state_dict().items()}))
            write_entry(path.with_suffix(".json"), key, json_bytes(meta))  # written last: marks the stage complete
        return model.eval(), StageCost(meta["train_s"], cached=False)

    def model_meta(self, key: str) -> dict:
        """Training metadata of a stored model stage ({} when it was never completed, is damaged or not its key's)."""
        path = self._path("models", key, "json")
        if path is None or not path.exists():
            return {}
        try:
            meta = json_entry(path, key)
            if not isinstance(meta, dict) or not _seconds(meta.get("train_s")):
                raise ValueError("no train_s")
            return meta
        except Exception as exc:
            self.report_damaged(path, exc)
            return {}

    def evaluation(self, key: str, load_model: Callable[[], Any],
                   attack: Callable[[Any, EvalCheckpoint | None], dict]) -> tuple[dict, StageCost]:
        """An attack stage; only ``attack`` is timed (getting the models it attacks or transfers from, with
        ``load_model``, is their training stages' cost).

        A killed evaluation resumes from its per-batch checkpoint, and the seconds already spent count.
        """
        path = self._path("attack", key, "json")
        if path is not None and path.exists():
            try:
                stored = json_entry(path, key)
                result, seconds = stored["result"], stored["seconds"]
                if not isinstance(result, dict):
                    raise ValueError("result is not an object")
                if not _seconds(seconds):
                    raise ValueError("seconds is not a finite non-negative number")
                self.loaded["attack"] += 1
                return result, StageCost(float(seconds), cached=True)
            except Exception as exc:
                self.report_damaged(path, exc)
        model = load_model()
        checkpoint = _FileCheckpoint(path.with_suffix(".partial.pt"), key, self) if path is not None else None
        start = time.perf_counter()
        result = attack(model, checkpoint)
        seconds = time.perf_counter() - start + (checkpoint.seconds_before if checkpoint else 0.0)
        self.computed["attack"] += 1
        if path is not None:
            write_entry(path, key, json_bytes({"result": result, "seconds": seconds}))
            checkpoint.clear()
        return result, StageCost(seconds, cached=False)


def _seconds(value: Any) -> bool:
    """A recorded duration: a finite non-negative number."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value < float("inf")


class _FileCheckpoint(EvalCheckpoint):
    """An evaluation's progress in one small sealed tensor file beside its stage file."""

    def __init__(self, path: Path, key: str, store: StageStore) -> None:
        self.path, self.key, self.store = path, key, store
        self.seconds_before = 0.0
        self._started = time.perf_counter()

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = torch_entry(self.path, self.key)
            if not isinstance(state.get("clean"), torch.Tensor) or state["clean"].dtype != torch.bool:
                raise ValueError("no clean flags")
            seconds = state.get("seconds", 0.0)
            if not _seconds(seconds):
                raise ValueError("seconds is not a finite non-negative number")
            self.seconds_before = float(seconds)
            self.store.loaded["attack-batches"] += sum(int(v) for v in state["done"].values())
            return {"clean": state["clean"], "flags": dict(state["flags"]), "done": dict(state["done"]),
                    "sizes": dict(state.get("sizes", {}))}
        except Exception as exc:
            self.store.report_damaged(self.path, exc)
            return None

    def save(self, state: dict[str, Any]) -> None:
        seconds = self.seconds_before + time.perf_counter() - self._started
        write_entry(self.path, self.key, torch_bytes({**state, "seconds": seconds}))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        seal_path(self.path).unlink(missing_ok=True)
