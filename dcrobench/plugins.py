"""Build the plugin manager from the ``dcrobench`` entry-point group.

Built-in plugins (package ``dcrobench_plugins``, the repo's ``plugins/`` folder) are listed in the
same group as third-party ones. A plugin that fails to import, implements a hook that does not
exist, or raises from a hook is reported in ``PluginFailure`` records and skipped, so one broken
plugin never takes down ``dcrobench list`` or another method's run. That includes a plugin that calls
``sys.exit()`` or raises any other ``BaseException`` while it is imported or registered: only the
user's interrupt (``KeyboardInterrupt``, and the stop signals dcrobench raises as
:class:`~dcrobench.errors.Interrupted`) passes through.

Built-ins are the entry points that the ``dcrobench`` distribution itself provides from modules
``dcrobench_plugins.*``. They are registered first, whatever their names sort like, and their names
(entry-point names and registered item names) are reserved: a third-party plugin cannot replace
them (see :mod:`dcrobench.registry`). Every plugin carries a :class:`PluginOrigin`, the
distribution and version that installed it.
"""

from __future__ import annotations

import contextlib
import re
import traceback
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

import pluggy

from . import hookspecs
from .errors import Interrupted, one_line
from .names import suggest

ENTRY_POINT_GROUP = "dcrobench"
BUILTIN_DISTRIBUTION = "dcrobench"
BUILTIN_PACKAGE = "dcrobench_plugins"
UNKNOWN_DISTRIBUTION = "unknown"


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    error: str
    #: ``True`` for a name conflict: only the conflicting item (or entry point) was skipped
    conflict: bool = False

    def __str__(self) -> str:
        if self.conflict:
            return f"plugin '{self.plugin}' conflict: {self.error}"
        return f"plugin '{self.plugin}' skipped: {self.error}"


@dataclass(frozen=True)
class PluginOrigin:
    """Where a plugin (and so every item it registered) comes from."""

    plugin: str  # entry-point name (or the name given to an ``extra_plugins`` object)
    distribution: str = UNKNOWN_DISTRIBUTION
    version: str = ""
    builtin: bool = False

    def as_dict(self) -> dict[str, str]:
        return {"distribution": self.distribution, "version": self.version, "plugin": self.plugin}

    @property
    def provider(self) -> str:
        """``dcrobench 0.1.0`` / ``evil-plugin 6.6`` / ``unknown``: the distribution, for messages."""
        return f"{self.distribution} {self.version}".strip()

    def __str__(self) -> str:
        kind = "built-in plugin" if self.builtin else "plugin"
        return f"{kind} '{self.plugin}' ({self.provider})"


def pass_interrupts(exc: BaseException) -> None:
    """Re-raise the user's interrupt (Ctrl-C, a stop signal); any other exception is the plugin's to report.

    Used as ``except BaseException as exc: pass_interrupts(exc); <report>``: a plugin calling ``sys.exit()``
    (``SystemExit``) or raising an odd ``BaseException`` subclass is a broken plugin, not a reason to end the
    process."""
    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        raise exc


def describe_exception(exc: BaseException) -> str:
    """A plugin's exception as one short line; ``SystemExit`` says that ``sys.exit`` was called."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: it called sys.exit({exc.code!r})" if exc.code is not None else "SystemExit: it called sys.exit()"
    try:
        return one_line(exc)
    except Exception:  # a plugin's exception whose __str__ raises
        return type(exc).__name__


def _normalize(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def entry_point_origin(ep: EntryPoint) -> PluginOrigin:
    """The distribution behind an entry point; built-in only for dcrobench's own ``dcrobench_plugins``."""
    dist = getattr(ep, "dist", None)
    name, ver = UNKNOWN_DISTRIBUTION, ""
    if dist is not None:
        try:
            name = dist.name or dist.metadata["Name"] or UNKNOWN_DISTRIBUTION
            ver = dist.version or ""
        except Exception:  # broken metadata: still a plugin, of unknown origin
            name, ver = UNKNOWN_DISTRIBUTION, ""
    module = ep.value.split(":")[0].strip()
    builtin = (dist is not None and _normalize(name) == BUILTIN_DISTRIBUTION
               and (module == BUILTIN_PACKAGE or module.startswith(BUILTIN_PACKAGE + ".")))
    return PluginOrigin(ep.name, name, ver, builtin)


def _spec_names() -> set[str]:
    return {n for n in dir(hookspecs) if n.startswith("register_")}


def misspelled_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hook implementations of ``plugin`` that match no spec (e.g. ``register_method``)."""
    specs = _spec_names()
    problems = []
    for attr in dir(plugin):
        if pm.parse_hookimpl_opts(plugin, attr) is not None and attr not in specs:
            close = suggest(attr, specs)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"implements unknown hook '{attr}'{hint}")
    return problems


def register_plugin(pm: pluggy.PluginManager, plugin: object, name: str, failures: list[PluginFailure]) -> bool:
    try:
        problems = misspelled_hooks(pm, plugin)
    except BaseException as exc:  # an attribute of the plugin that raises when looked at
        pass_interrupts(exc)
        failures.append(PluginFailure(name, f"could not be inspected: {describe_exception(exc)}"))
        return False
    if problems:
        failures.append(PluginFailure(name, "; ".join(problems)))
        return False
    if pm.is_registered(plugin) or pm.get_plugin(name) is not None:
        failures.append(PluginFailure(name, "registered twice under the same name"))
        return False
    try:
        pm.register(plugin, name=name)
    except BaseException as exc:  # pluggy's validation, e.g. a hook taking arguments its spec does not have
        pass_interrupts(exc)
        failures.append(PluginFailure(name, f"could not be registered: {describe_exception(exc)}"))
        with contextlib.suppress(Exception):
            pm.unregister(name=name)
        return False
    return True


def load_entry_point(ep: EntryPoint, pm: pluggy.PluginManager, failures: list[PluginFailure]) -> bool:
    try:
        plugin = ep.load()
    except BaseException as exc:  # ImportError, any other error, and sys.exit() in the plugin's module body
        pass_interrupts(exc)
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
        failures.append(PluginFailure(ep.name, f"import failed: {describe_exception(exc)}{where}"))
        return False
    return register_plugin(pm, plugin, ep.name, failures)


def _entry_points_by_origin() -> tuple[list[tuple[EntryPoint, PluginOrigin]], list[tuple[EntryPoint, PluginOrigin]]]:
    """(built-in, third-party) entry points, each sorted by name, each distinct entry point once."""
    builtin, third = [], []
    seen: set[tuple[str, str, str]] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        origin = entry_point_origin(ep)
        key = (ep.name, ep.value, _normalize(origin.distribution))
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        (builtin if origin.builtin else third).append((ep, origin))
    return sorted(builtin, key=lambda e: e[0].name), sorted(third, key=lambda e: e[0].name)


def load_plugins(extra_plugins: dict[str, object] | None = None
                 ) -> tuple[pluggy.PluginManager, list[PluginFailure], dict[str, PluginOrigin]]:
    """A fresh plugin manager: built-ins first, then third-party entry points, then ``extra_plugins``.

    Returns the manager, the failures, and the origin of every registered plugin by name. An
    entry-point name already taken by a built-in is refused; one that several third-party
    distributions use is refused for all of them (never decided by installation order).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    origins: dict[str, PluginOrigin] = {}
    builtin, third = _entry_points_by_origin()
    for ep, origin in builtin:
        if ep.name in origins:
            failures.append(PluginFailure(ep.name, f"entry point defined twice by {origin.provider}"))
        elif load_entry_point(ep, pm, failures):
            origins[ep.name] = origin
    reserved = {ep.name: origin for ep, origin in builtin}  # even when the built-in failed to load
    claims: dict[str, list[PluginOrigin]] = {}
    for _, origin in third:
        claims.setdefault(origin.plugin, []).append(origin)
    for ep, origin in third:
        if ep.name in reserved:
            failures.append(PluginFailure(ep.name, f"entry-point name of {reserved[ep.name]} is reserved; "
                                                   f"the entry point of {origin.provider} was not loaded", conflict=True))
            continue
        others = [o for o in claims[ep.name] if o != origin]
        if others:
            failures.append(PluginFailure(ep.name, f"entry-point name used by {origin.provider} and by "
                                                   + ", ".join(o.provider for o in others) + "; none of them was loaded",
                                          conflict=True))
            continue
        if load_entry_point(ep, pm, failures):
            origins[ep.name] = origin
    for name, plugin in (extra_plugins or {}).items():
        if name in origins:
            failures.append(PluginFailure(name, f"registered twice under the same name (already used by {origins[name]})"))
        elif register_plugin(pm, plugin, name, failures):
            origins[name] = PluginOrigin(name)
    return pm, failures, origins


def get_plugin_manager(extra_plugins: dict[str, object] | None = None) -> tuple[pluggy.PluginManager, list[PluginFailure]]:
    """A fresh plugin manager with every entry-point plugin (plus ``extra_plugins``, for tests)."""
    pm, failures, _ = load_plugins(extra_plugins)
    return pm, failures
