"""Stage cache: compressed sets, trained models and attack results stored by content hash.

A run is four stages — compress, train standard, train adversarial, attack — and each is stored
under a key hashing everything that determines it. A crash, a kill or a new seed therefore redoes
only what is missing, and one compressed set serves every model and norm that shares it. Files are
written atomically, so concurrent workers computing the same stage cannot corrupt it.
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
from .fileio import atomic_torch_save, atomic_write_json
from .methods import CompressedSet

STAGES_DIRNAME = "_stages"


class StageStore:
    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self.computed: Counter[str] = Counter()
        self.loaded: Counter[str] = Counter()

    @staticmethod
    def key(kind: str, *parts: Any) -> str:
        return f"{kind}-{content_key(kind, *parts)}"

    def _path(self, kind: str, key: str, ext: str) -> Path | None:
        return None if self.root is None else self.root / kind / f"{key}.{ext}"

    def compressed(self, key: str, make: Callable[[], CompressedSet], store: bool = True) -> CompressedSet:
        path = self._path("compress", key, "pt") if store else None
        if path is not None and path.exists():
            self.loaded["compress"] += 1
            return CompressedSet.load(path)
        comp = make()
        self.computed["compress"] += 1
        if path is not None:
            comp.save(path)
        return comp

    def model(self, key: str, build: Callable[[], nn.Module], fit: Callable[[nn.Module], dict]) -> tuple[nn.Module, dict]:
        """A trained model: loaded from its stage file or built and trained (``fit`` returns stats)."""
        kind = key.split("-", 1)[0]
        path = self._path("models", key, "pt")
        model = build()
        meta = self.model_meta(key)
        if meta:
            device = next(model.parameters()).device
            model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
            self.loaded[kind] += 1
            return model.eval(), meta
        start = time.perf_counter()
        stats = fit(model)
        meta = {**stats, "train_s": time.perf_counter() - start}
        self.computed[kind] += 1
        if path is not None:
            atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
            atomic_write_json(path.with_suffix(".json"), meta)  # written last: marks the stage complete
        return model.eval(), meta

    def model_meta(self, key: str) -> dict:
        """Training metadata of a stored model stage ({} when it was never completed)."""
        path = self._path("models", key, "json")
        if path is None or not path.exists():
            return {}
        return json.loads(path.read_text())

    def evaluation(self, key: str, make: Callable[[], dict]) -> dict:
        path = self._path("attack", key, "json")
        if path is not None and path.exists():
            self.loaded["attack"] += 1
            return json.loads(path.read_text())
        start = time.perf_counter()
        result = make()
        result["eval_s"] = time.perf_counter() - start
        self.computed["attack"] += 1
        if path is not None:
            atomic_write_json(path, result)
        return result
