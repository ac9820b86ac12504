"""Name -> object lookups filled from the ``register_*`` hooks.

Each registered item keeps its :class:`PluginOrigin` (plugin, distribution, version, built-in).
Built-in names are reserved: a third-party item that reuses one is reported as a conflict and
skipped (the built-in stays, the plugin's other items still register), and a name that several
third-party plugins register is refused for all of them, so no outcome depends on the order in
which plugins are found.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .errors import DuplicateNameError, InvalidNameError, UnknownNameError
from .names import unknown_name_message
from .plugins import PluginFailure, PluginOrigin, load_plugins

__all__ = ["PluginFailure", "PluginOrigin", "Registries", "Registry", "build_registries", "registries"]

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origins: dict[str, PluginOrigin] = {}

    def add(self, name: str, item: T, origin: PluginOrigin | str) -> None:
        if isinstance(origin, str):  # a bare plugin name: third-party of unknown distribution
            origin = PluginOrigin(origin)
        if not isinstance(name, str) or not name:
            raise InvalidNameError(f"{self.kind} from plugin '{origin.plugin}' has no name")
        if name in self._items:
            raise DuplicateNameError(
                f"{self.kind} '{name}' from plugin '{origin.plugin}' is already registered by plugin '{self._origins[name].plugin}'"
            )
        self._items[name] = item
        self._origins[name] = origin

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self._items)) from None

    def origin(self, name: str) -> PluginOrigin:
        """The plugin, distribution and version that registered ``name``."""
        try:
            return self._origins[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self._items)) from None

    def source(self, name: str) -> str:
        """The name of the plugin (entry point) that registered ``name``."""
        return self.origin(name).plugin

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


def _offers(impl, hook_name: str, registry: Registry, name_of, origin: PluginOrigin,
            failures: list[PluginFailure]) -> list[tuple[str, object, PluginOrigin]]:
    """The (name, item, origin) a hook implementation offers; a raising hook or a nameless item is reported."""
    try:
        items = list(impl.function() or [])
    except Exception as exc:
        failures.append(PluginFailure(origin.plugin, f"{hook_name} raised {type(exc).__name__}: {exc}"))
        return []
    out = []
    for item in items:
        try:
            name = name_of(item)
        except Exception as exc:
            name = None
            detail = f" ({type(exc).__name__}: {exc})"
        else:
            detail = ""
        if not isinstance(name, str) or not name:
            failures.append(PluginFailure(origin.plugin, f"{hook_name} returned a {registry.kind} with no name "
                                                         f"({item!r}){detail}; skipped"))
            continue
        out.append((name, item, origin))
    return out


def _register(registry: Registry, offers: list[tuple[str, object, PluginOrigin]], failures: list[PluginFailure]) -> None:
    """Built-ins first; then third-party items, except built-in names and names several plugins claim."""
    kind = registry.kind
    for name, item, origin in offers:
        if not origin.builtin:
            continue
        try:
            registry.add(name, item, origin)
        except (DuplicateNameError, InvalidNameError) as exc:
            failures.append(PluginFailure(origin.plugin, str(exc)))
    claimants: dict[str, list[PluginOrigin]] = {}
    for name, _, origin in offers:
        if not origin.builtin and origin not in claimants.setdefault(name, []):
            claimants[name].append(origin)
    reported: set[tuple[str, str]] = set()
    for name, item, origin in offers:
        if origin.builtin:
            continue
        if name in registry and registry.origin(name).builtin:
            failures.append(PluginFailure(origin.plugin, (
                f"{kind} '{name}' is a built-in name, already registered by {registry.origin(name)}; "
                f"{origin} may not replace it: skipped"), conflict=True))
            continue
        others = [o for o in claimants[name] if o != origin]
        if others:
            if (origin.plugin, name) not in reported:
                reported.add((origin.plugin, name))
                failures.append(PluginFailure(origin.plugin, (
                    f"{kind} '{name}' is registered by {origin} and by " + ", ".join(map(str, others))
                    + "; refused for all of them"), conflict=True))
            continue
        try:
            registry.add(name, item, origin)
        except (DuplicateNameError, InvalidNameError) as exc:  # the same plugin offers the name twice
            failures.append(PluginFailure(origin.plugin, str(exc)))


def build_registries(extra_plugins: dict[str, object] | None = None) -> Registries:
    """Call every plugin's registration hooks one plugin at a time, isolating failures."""
    pm, failures, origins = load_plugins(extra_plugins)
    regs = Registries(failures=list(failures))
    for hook_name, (attr, name_of) in _HOOKS.items():
        registry: Registry = getattr(regs, attr)
        offers: list[tuple[str, object, PluginOrigin]] = []
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            origin = origins.get(impl.plugin_name) or PluginOrigin(impl.plugin_name)
            offers += _offers(impl, hook_name, registry, name_of, origin, regs.failures)
        _register(registry, offers, regs.failures)
    return regs


@functools.cache
def registries() -> Registries:
    """The process-wide registries (built on first use, never at import)."""
    return build_registries()
