"""Build the plugin manager from the ``dcrobench`` entry-point group.

Built-in plugins (package ``dcrobench_plugins``, the repo's ``plugins/`` folder) are listed in the
same group as third-party ones. A plugin that fails to import, implements a hook that does not
exist, or raises from a hook is reported in ``PluginFailure`` records and skipped, so one broken
plugin never takes down ``dcrobench list`` or another method's run.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

import pluggy

from . import hookspecs
from .names import suggest

ENTRY_POINT_GROUP = "dcrobench"


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    error: str

    def __str__(self) -> str:
        return f"plugin '{self.plugin}' skipped: {self.error}"


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


def register_plugin(pm: pluggy.PluginManager, plugin: object, name: str, failures: list[PluginFailure]) -> None:
    problems = misspelled_hooks(pm, plugin)
    if problems:
        failures.append(PluginFailure(name, "; ".join(problems)))
        return
    if pm.is_registered(plugin) or pm.get_plugin(name) is not None:
        failures.append(PluginFailure(name, "registered twice under the same name"))
        return
    pm.register(plugin, name=name)


def load_entry_point(ep: EntryPoint, pm: pluggy.PluginManager, failures: list[PluginFailure]) -> None:
    try:
        plugin = ep.load()
    except Exception as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
        failures.append(PluginFailure(ep.name, f"import failed: {type(exc).__name__}: {exc}{where}"))
        return
    register_plugin(pm, plugin, ep.name, failures)


def get_plugin_manager(extra_plugins: dict[str, object] | None = None) -> tuple[pluggy.PluginManager, list[PluginFailure]]:
    """A fresh plugin manager with every entry-point plugin (plus ``extra_plugins``, for tests)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    seen: set[str] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(ep.name)
        load_entry_point(ep, pm, failures)
    for name, plugin in (extra_plugins or {}).items():
        register_plugin(pm, plugin, name, failures)
    return pm, failures
