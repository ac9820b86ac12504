"""Trained models as files a user can take away: safetensors weights plus a JSON spec beside them.

``<name>.safetensors`` holds the state dict (plain tensors: nothing is unpickled on load);
``<name>.json`` says how to rebuild the module (architecture, its parameters, the dataset's shape,
classes and normalisation), what it was trained on (method, dataset, budget, compressed-set hash),
how (standard or adversarial training, norm, eps, seed) and under which protocol (name, version,
hash). :func:`load_model` rebuilds a plain ``torch.nn.Module`` that takes [0, 1] pixels — it
normalises inside — so tools that expect RobustBench-style models can attack it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import DcrobenchError, one_line
from .fileio import atomic_write_new_or_same, json_bytes

EXPORT_FORMAT = "dcrobench-model"
EXPORT_VERSION = 1


def save_model(model: nn.Module, path: Path, spec: dict[str, Any]) -> Path:
    """Create ``path`` (``.safetensors``) and its spec (``.json``); the spec is written last and marks it complete.

    A file already there is kept when it holds the very bytes of this export (written before), and refused otherwise:
    an export never replaces a file it did not write."""
    from safetensors.torch import save

    path = Path(path).with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    spec_file = {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, **spec, "weights": path.name}
    for target, data in ((path, save(state)), (path.with_suffix(".json"), json_bytes(spec_file))):
        try:
            atomic_write_new_or_same(target, data)
        except FileExistsError:
            raise DcrobenchError(f"refusing to overwrite {target}: it holds something other than this export") from None
    return path


def read_spec(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The spec of an exported model and the path of its weights (``path``: either file of the pair)."""
    path = Path(path)
    spec_path = path.with_suffix(".json")
    if not spec_path.is_file():
        raise DcrobenchError(f"model spec not found: {spec_path} (an exported model is a .safetensors + .json pair)")
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, ValueError) as exc:
        raise DcrobenchError(f"cannot read model spec {spec_path}: {one_line(exc)}") from None
    if not isinstance(spec, dict) or spec.get("format") != EXPORT_FORMAT:
        raise DcrobenchError(f"{spec_path} is not a dcrobench model spec")
    if spec.get("format_version") != EXPORT_VERSION:
        raise DcrobenchError(f"{spec_path}: model format version {spec.get('format_version')!r} is not "
                             f"{EXPORT_VERSION}; use the dcrobench version that wrote it")
    for key in ("architecture", "input_shape", "num_classes", "normalization"):
        if key not in spec:
            raise DcrobenchError(f"{spec_path}: the spec lacks '{key}'")
    weights = spec_path.with_name(str(spec.get("weights", path.with_suffix(".safetensors").name)))
    return spec, weights


def load_model(path: str | Path, device: str | torch.device = "cpu", registries=None) -> nn.Module:
    """An exported model as a plain ``nn.Module`` in eval mode, taking [0, 1] pixels of ``spec['input_shape']``."""
    from safetensors.torch import load_file

    from .registry import registries as default_registries

    spec, weights = read_spec(path)
    regs = registries or default_registries()
    build = regs.models.get(spec["architecture"]).build
    channels, size, _ = spec["input_shape"]
    norm = spec["normalization"]
    model = build(channels, size, spec["num_classes"], norm["mean"], norm["std"], **spec.get("model_params", {}))
    if not weights.is_file():
        raise DcrobenchError(f"model weights not found: {weights}")
    try:
        state = load_file(str(weights), device="cpu")
        model.load_state_dict(state)
    except Exception as exc:  # a damaged file, or weights of another architecture
        raise DcrobenchError(f"cannot load model weights {weights}: {one_line(exc)}") from None
    return model.to(device).eval()
