"""Name -> object lookups filled from the ``register_*`` hooks."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .errors import DuplicateNameError, UnknownNameError
from .names import unknown_name_message
from .plugins import PluginFailure, get_plugin_manager

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._sources: dict[str, str] = {}

    def add(self, name: str, item: T, source: str) -> None:
        if not isinstance(name, str) or not name:
            raise DuplicateNameError(f"{self.kind} from plugin '{source}' has no name")
        if name in self._items:
            raise DuplicateNameError(
                f"{self.kind} '{name}' from plugin '{source}' is already registered by plugin '{self._sources[name]}'"
            )
        self._items[name] = item
        self._sources[name] = source

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self._items)) from None

    def source(self, name: str) -> str:
        return self._sources[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def _method_name(cls) -> str:
    return getattr(cls, "name", "")


@dataclass
class Registries:
    methods: Registry = field(default_factory=lambda: Registry("method"))
    datasets: Registry = field(default_factory=lambda: Registry("dataset"))
    models: Registry = field(default_factory=lambda: Registry("model"))
    attacks: Registry = field(default_factory=lambda: Registry("attack"))
    failures: list[PluginFailure] = field(default_factory=list)


# hook name -> (registries attribute, how to get an item's name)
_HOOKS = {
    "register_methods": ("methods", _method_name),
    "register_datasets": ("datasets", lambda spec: spec.name),
    "register_models": ("models", lambda spec: spec.name),
    "register_attacks": ("attacks", lambda spec: spec.name),
}


def build_registries(extra_plugins: dict[str, object] | None = None) -> Registries:
    """Call every plugin's registration hooks one plugin at a time, isolating failures."""
    pm, failures = get_plugin_manager(extra_plugins)
    regs = Registries(failures=list(failures))
    for hook_name, (attr, name_of) in _HOOKS.items():
        registry: Registry = getattr(regs, attr)
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            try:
                items = impl.function() or []
                for item in items:
                    registry.add(name_of(item), item, impl.plugin_name)
            except Exception as exc:
                regs.failures.append(PluginFailure(impl.plugin_name, f"{hook_name} raised {type(exc).__name__}: {exc}"))
    return regs


@functools.cache
def registries() -> Registries:
    """The process-wide registries (built on first use, never at import)."""
    return build_registries()
