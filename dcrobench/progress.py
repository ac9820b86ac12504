"""Progress bars: one switch, passed explicitly from the CLI or the API down to every stage and plugin.

``enabled`` is ``True`` (always draw), ``False`` (never) or ``None`` (draw only on a terminal, tqdm's
``disable=None``). Nothing here reads environment variables: a caller that wants quiet says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def bar(iterable: Iterable | None = None, *, enabled: bool | None = None, **kwargs: Any):
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``), drawn as ``enabled`` says."""
    from tqdm.auto import tqdm

    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=None if enabled is None else not enabled, **kwargs)
