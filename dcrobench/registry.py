"""Name -> object lookups filled from the ``register_*`` hooks.

Each registered item keeps its :class:`PluginOrigin` (plugin, distribution, version, built-in).
Built-in names are reserved: a third-party item that reuses one is reported as a conflict and
skipped (the built-in stays, the plugin's other items still register), and a name that several
third-party plugins register is refused for all of them, so no outcome depends on the order in
which plugins are found.

An item of the wrong type (a method that is not a ``CompressionMethod`` subclass, a dataset that is not a
``DatasetSpec``, ...) is refused when the registry is built, reported against its plugin, and a lookup of
its name says why it is missing. A third-party dataset's loader is wrapped so that whatever it raises
when called becomes one :class:`~dcrobench.errors.DatasetError` naming the dataset and the plugin.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import DatasetError, DcrobenchError, DuplicateNameError, Interrupted, InvalidNameError, UnknownNameError
from .names import unknown_name_message
from .plugins import PluginFailure, PluginOrigin, describe_exception, load_plugins, pass_interrupts

__all__ = ["PluginFailure", "PluginOrigin", "Registries", "Registry", "build_registries", "registries"]

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origins: dict[str, PluginOrigin] = {}
        self._refused: dict[str, str] = {}  # name -> why its plugin's item was refused (wrong type)

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

    def refuse(self, name: str, why: str) -> None:
        """Remember that a plugin offered ``name`` but the item was refused: :meth:`get` then says why."""
        self._refused.setdefault(name, why)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            if name in self._refused:
                why = self._refused[name]
                raise UnknownNameError(f"{self.kind} '{name}' is not available: {why}") from None
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


def _expected_type(hook_name: str) -> tuple[Callable[[object], bool], str]:
    """(is the item of the type the hook promises, that type in words); imported late: no import cycles."""
    from .attacks import AttackSet, AttackSpec
    from .datasets import DatasetSpec
    from .methods import CompressionMethod
    from .models import ModelSpec

    return {
        "register_methods": (lambda item: isinstance(item, type) and issubclass(item, CompressionMethod),
                             "a subclass of dcrobench.methods.CompressionMethod"),
        "register_datasets": (lambda item: isinstance(item, DatasetSpec), "a dcrobench.datasets.DatasetSpec"),
        "register_models": (lambda item: isinstance(item, ModelSpec), "a dcrobench.models.ModelSpec"),
        "register_attacks": (lambda item: isinstance(item, (AttackSpec, AttackSet)),
                             "a dcrobench.attacks.AttackSpec or AttackSet"),
    }[hook_name]


def _describe(item: object) -> str:
    """What a plugin returned, in a few words (never raising, whatever the item's ``__repr__`` does)."""
    try:
        if isinstance(item, type):
            return f"class {item.__module__}.{item.__qualname__}"
        text = repr(item)
    except BaseException as exc:
        pass_interrupts(exc)
        text = f"<{type(item).__name__} object>"
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


def _offers(impl, hook_name: str, registry: Registry, name_of, origin: PluginOrigin,
            failures: list[PluginFailure]) -> list[tuple[str, object, PluginOrigin]]:
    """The (name, item, origin) a hook implementation offers; a raising hook, a nameless item or one of the
    wrong type is reported (and a wrong-typed item's name remembered as refused)."""
    try:
        returned = impl.function()
    except BaseException as exc:  # also sys.exit() in the hook: a broken plugin, not the end of the command
        pass_interrupts(exc)
        failures.append(PluginFailure(origin.plugin, f"{hook_name} raised {describe_exception(exc)}"))
        return []
    if returned is None:
        items: list = []
    elif isinstance(returned, (str, bytes, dict)) or not hasattr(type(returned), "__iter__"):
        failures.append(PluginFailure(origin.plugin, f"{hook_name} returned {_describe(returned)}, "
                                                     f"not a list of {registry.kind}s; skipped"))
        return []
    else:
        try:
            items = list(returned)
        except BaseException as exc:  # a generator that raises
            pass_interrupts(exc)
            failures.append(PluginFailure(origin.plugin, f"{hook_name} raised {describe_exception(exc)}"))
            return []
    is_expected, expected = _expected_type(hook_name)
    out = []
    for item in items:
        try:
            name = name_of(item)
        except BaseException as exc:
            pass_interrupts(exc)
            name = None
            detail = f" ({describe_exception(exc)})"
        else:
            detail = ""
        if not is_expected(item):
            what = f"returned {_describe(item)}, not {expected}"
            failures.append(PluginFailure(origin.plugin, f"{hook_name} {what}; refused"))
            if isinstance(name, str) and name:
                registry.refuse(name, f"{hook_name} of {origin} {what}")
            continue
        if not isinstance(name, str) or not name:
            failures.append(PluginFailure(origin.plugin, f"{hook_name} returned a {registry.kind} with no name "
                                                         f"({_describe(item)}){detail}; skipped"))
            continue
        if hook_name == "register_datasets" and not origin.builtin:
            item = _guard_loader(item, name, origin)
        out.append((name, item, origin))
    return out


@dataclass(frozen=True)
class PluginLoader:
    """A third-party dataset's ``load``: whatever the plugin's loader raises becomes one :class:`DatasetError`
    naming the dataset and the plugin, and what it returns must be a ``(train, test)`` pair of ``ImageSet``
    (else the same error). The user's interrupt passes through, and so does a ``DcrobenchError`` the loader
    raises itself (a message it wrote for the terminal, e.g. "no network")."""

    load: Callable[[Path, bool], Any]
    dataset: str
    origin: PluginOrigin

    def _error(self, what: str) -> DatasetError:
        return DatasetError(f"dataset '{self.dataset}' of {self.origin}: {what}")

    def __call__(self, root: Path, download: bool) -> Any:
        from .imageset import ImageSet

        try:
            result = self.load(root, download)
        except (Interrupted, DcrobenchError):
            raise
        except BaseException as exc:
            pass_interrupts(exc)
            raise self._error(f"its loader raised {describe_exception(exc)}") from None
        if not (isinstance(result, (tuple, list)) and len(result) == 2 and all(isinstance(p, ImageSet) for p in result)):
            raise self._error(f"its loader returned {_describe(result)}, not a (train, test) pair of ImageSet")
        return result


def _guard_loader(spec: Any, name: str, origin: PluginOrigin) -> Any:
    """The spec with its loader wrapped in :class:`PluginLoader` (the spec itself where it cannot be copied)."""
    if isinstance(spec.load, PluginLoader):
        return spec
    try:
        return dataclasses.replace(spec, load=PluginLoader(spec.load, name, origin))
    except Exception:  # a DatasetSpec subclass with its own constructor: keep it as it is
        return spec


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
