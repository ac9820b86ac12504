"""Hook specifications: the whole plugin API of dcrobench.

A plugin is a module (or object) with functions decorated by ``hookimpl`` whose names match the
specs below, listed in its package's ``[project.entry-points.dcrobench]``. The built-in methods,
datasets, models and attacks are registered through exactly these hooks and that group.

Every hook is a *registration* hook, called once when the registry is built; each returns a
list, and dcrobench concatenates the lists of all plugins (no ``firstresult``: every plugin
contributes). A name registered twice is rejected and reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .attacks import AttackSet, AttackSpec
    from .datasets import DatasetSpec
    from .methods import CompressionMethod
    from .models import ModelSpec

PROJECT = "dcrobench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- What a run compresses -------------------------------------------------------------------
@hookspec
def register_methods() -> list[type[CompressionMethod]]:
    """Return compression-method classes (subclasses of ``dcrobench.methods.CompressionMethod``)."""


# --- What a run trains and tests on ----------------------------------------------------------
@hookspec
def register_datasets() -> list[DatasetSpec]:
    """Return ``dcrobench.datasets.DatasetSpec`` objects (name, shape, classes, loader)."""


@hookspec
def register_models() -> list[ModelSpec]:
    """Return ``dcrobench.models.ModelSpec`` objects (name and a builder taking the input shape)."""


# --- How a run measures robustness -----------------------------------------------------------
@hookspec
def register_attacks() -> list[AttackSpec | AttackSet]:
    """Return ``dcrobench.attacks.AttackSpec`` (an attack, its settings and their defaults) and
    ``dcrobench.attacks.AttackSet`` objects (named lists of attacks), usable in ``evaluation.attacks``."""
