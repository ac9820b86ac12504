"""Stage cache: compressed sets, trained models and attack results stored by content hash.

A run is four stages — compress, train standard, train adversarial, attack — and each is stored
under a key hashing everything that determines it. A crash, a kill or a new seed therefore redoes
only what is missing, and one compressed set serves every model and norm that shares it. Files are
written atomically, so concurrent workers computing the same stage cannot corrupt it; a file that
is damaged anyway (disk full, a copy cut short) is reported once and recomputed.

Every stage comes back with its ``StageCost``: the seconds it took when it was computed, and
whether this run loaded it instead.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .cache import content_key
from .attacks import EvalCheckpoint
from .costs import StageCost
from .errors import one_line
from .fileio import atomic_torch_save, atomic_write_json
from .methods import CompressedSet

STAGES_DIRNAME = "_stages"
#: 3: attack stages hold per-point flags and resume per batch; 2: {"result", "seconds"}
STAGE_FORMAT = 3


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
        self.warn(f"stage file {path} is unreadable ({one_line(exc)}); recomputing it")

    def compressed(self, key: str, make: Callable[[], CompressedSet], store: bool = True) -> tuple[CompressedSet, StageCost]:
        path = self._path("compress", key, "pt") if store else None
        if path is not None and path.exists():
            try:
                comp = CompressedSet.load(path)
                self.loaded["compress"] += 1
                return comp, StageCost(float(comp.provenance.compress_s), cached=True)
            except Exception as exc:
                self.report_damaged(path, exc)
        comp = make()
        self.computed["compress"] += 1
        if path is not None:
            comp.save(path)
        return comp, StageCost(float(comp.provenance.compress_s), cached=False)

    def model(self, key: str, build: Callable[[], nn.Module], fit: Callable[[nn.Module], dict]) -> tuple[nn.Module, StageCost]:
        """A trained model: loaded from its stage file or built and trained (``fit`` returns stats)."""
        kind = key.split("-", 1)[0]
        path = self._path("models", key, "pt")
        model = build()
        meta = self.model_meta(key)
        if meta and path is not None:
            try:
                device = next(model.parameters()).device
                model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
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
            atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
            atomic_write_json(path.with_suffix(".json"), meta)  # written last: marks the stage complete
        return model.eval(), StageCost(meta["train_s"], cached=False)

    def model_meta(self, key: str) -> dict:
        """Training metadata of a stored model stage ({} when it was never completed or is damaged)."""
        path = self._path("models", key, "json")
        if path is None or not path.exists():
            return {}
        try:
            meta = json.loads(path.read_text())
            if not isinstance(meta, dict) or not isinstance(meta.get("train_s"), (int, float)):
                raise ValueError("no train_s")
            return meta
        except Exception as exc:
            self.report_damaged(path, exc)
            return {}

    def evaluation(self, key: str, load_model: Callable[[], nn.Module],
                   attack: Callable[[nn.Module, EvalCheckpoint | None], dict]) -> tuple[dict, StageCost]:
        """An attack stage; only ``attack`` is timed (getting the model is the training stage's cost).

        A killed evaluation resumes from its per-batch checkpoint, and the seconds already spent count.
        """
        path = self._path("attack", key, "json")
        if path is not None and path.exists():
            try:
                stored = json.loads(path.read_text())
                result, seconds = stored["result"], float(stored["seconds"])
                if not isinstance(result, dict):
                    raise ValueError("result is not an object")
                self.loaded["attack"] += 1
                return result, StageCost(seconds, cached=True)
            except Exception as exc:
                self.report_damaged(path, exc)
        model = load_model()
        checkpoint = _FileCheckpoint(path.with_suffix(".partial.pt"), self) if path is not None else None
        start = time.perf_counter()
        result = attack(model, checkpoint)
        seconds = time.perf_counter() - start + (checkpoint.seconds_before if checkpoint else 0.0)
        self.computed["attack"] += 1
        if path is not None:
            atomic_write_json(path, {"result": result, "seconds": seconds})
            checkpoint.clear()
        return result, StageCost(seconds, cached=False)


class _FileCheckpoint(EvalCheckpoint):
    """An evaluation's progress in one small tensor file beside its stage file."""

    def __init__(self, path: Path, store: StageStore) -> None:
        self.path, self.store = path, store
        self.seconds_before = 0.0
        self._started = time.perf_counter()

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(state.get("clean"), torch.Tensor) or state["clean"].dtype != torch.bool:
                raise ValueError("no clean flags")
            self.seconds_before = float(state.get("seconds", 0.0))
            self.store.loaded["attack-batches"] += sum(int(v) for v in state["done"].values())
            return {"clean": state["clean"], "flags": dict(state["flags"]), "done": dict(state["done"]),
                    "sizes": dict(state.get("sizes", {}))}
        except Exception as exc:
            self.store.report_damaged(self.path, exc)
            return None

    def save(self, state: dict[str, Any]) -> None:
        seconds = self.seconds_before + time.perf_counter() - self._started
        atomic_torch_save({**state, "seconds": seconds}, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
