"""Did-you-mean suggestions shared by every name lookup."""

import difflib
from collections.abc import Iterable


def suggest(name: str, valid: Iterable[str], n: int = 3) -> list[str]:
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=n, cutoff=0.5)
    if not close:
        close = [v for v in valid if name.lower() in v.lower() or v.lower() in name.lower()][:n]
    return close


def unknown_name_message(kind: str, name: str, valid: Iterable[str]) -> str:
    valid = sorted(valid)
    close = suggest(name, valid)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"unknown {kind} '{name}'.{hint} Available {kind}s: {', '.join(valid) or '(none)'}."
