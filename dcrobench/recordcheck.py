"""What `leaderboard check` re-derives of each valid record without any compute, so that a hand-edited record
fails: its ε from its protocol and dataset, its budget from its set's per-class counts, its cell (protocol,
version, hash, method, dataset, budget, model, norm, seed) from its path under the results folder, and its
robustness curve from its own accuracies (no point above the clean accuracy, the radius of each point a multiple
of ε, the point at 1×ε the robust accuracy).

Schema validation (:mod:`dcrobench.validation`) already holds each evaluation's robust accuracy at or below its
clean accuracy and every attack's accuracy; this module checks what takes the protocol, the dataset, the path or
the other records. A record whose protocol cannot be loaded (a version the built-in protocol has moved past, a
protocol file not given, a protocol hash that is not the protocol's) has its ε checked against the other records
of its protocol version, dataset and norm instead (the tables print one ε for them), with one note saying so.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .results import Record
from .validation import TOLERANCE

#: the fields of a record's file name, in order (see :meth:`dcrobench.results.CellKey.relpath`)
NAME_FIELDS = ("method/name", "dataset", "budget/ipc", "model", "norm", "seed", "protocol/hash")
FOLDER = re.compile(r"(.+)-v(\d+)")


@dataclass
class Rederived:
    problems: list[str] = field(default_factory=list)  # "<path>: <field>: ..." one mismatch each
    notes: list[str] = field(default_factory=list)  # what could not be re-derived, and why


class _Findings:
    """The mismatches of one record: per field the record's value and every source that disagrees with it
    (one line per field), plus lines of their own."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fields: dict[str, tuple[str, list[str]]] = {}
        self.other: list[str] = []

    def disagree(self, name: str, value: Any, why: str) -> None:
        whys = self.fields.setdefault(name, (_text(value), []))[1]
        if why not in whys:
            whys.append(why)

    def line(self, name: str, text: str) -> None:
        self.other.append(f"{self.path}: {name}: {text}")

    def lines(self) -> list[str]:
        return [f"{self.path}: {name}: {value} in the record, but {'; '.join(whys)}"
                for name, (value, whys) in self.fields.items()] + self.other


def _text(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=TOLERANCE)


class Protocols:
    """Protocols by (name, version): the files given first, then the built-in protocol of that name."""

    def __init__(self, files: Iterable[Any] = ()) -> None:
        self.given = {(p.name, p.version): p for p in files}
        self.builtin: dict[str, Any] = {}

    def get(self, name: str, version: int) -> tuple[Any | None, str | None]:
        """(protocol, None), or (None, why it cannot be had)."""
        if (name, version) in self.given:
            return self.given[(name, version)], None
        if name not in self.builtin:
            self.builtin[name] = _builtin(name)
        proto = self.builtin[name]
        if isinstance(proto, str):
            return None, proto
        if proto.version != version:
            return None, f"the built-in protocol '{name}' is now v{proto.version}"
        return proto, None

    def for_record(self, rec: Record) -> tuple[Any | None, str | None]:
        """The protocol a record was made under, only if it still gives the record's hash; else why not."""
        proto, why = self.get(rec.protocol.name, rec.protocol.version)
        if proto is not None and proto.hash_for(rec.method.name, method_blocks(rec.method.name)) != rec.protocol.hash:
            return None, (f"their protocol hash is not the one protocol {rec.protocol.name} "
                          f"v{rec.protocol.version} gives now")
        return proto, why


def _builtin(name: str) -> Any:
    """The built-in protocol ``name`` (never a file of that name in the working folder), or why not."""
    from .errors import DcrobenchError
    from .protocol import builtin_protocol, builtin_protocols

    if name not in builtin_protocols():
        return f"'{name}' is not a built-in protocol (give its file with --protocol)"
    try:
        return builtin_protocol(name)
    except (DcrobenchError, OSError) as exc:
        return f"the built-in protocol '{name}' cannot be loaded ({exc})"


def _datasets() -> Any:
    from .registry import registries

    return registries().datasets


def rederive(records: list[Record], results_dir: Path, protocol_files: Iterable[Any] = (),
             skip_path: Iterable[str] = ()) -> Rederived:
    """Every mismatch between a valid record and what can be re-derived of it (``skip_path``: records whose
    path is not checked: the first of duplicates, which the duplicate line already names)."""
    protocols, datasets, skip = Protocols(protocol_files), _datasets(), set(skip_path)
    out = Rederived()
    unresolved: Counter = Counter()  # (name, version, why) -> records whose ε is not checked against the protocol
    unknown_data: Counter = Counter()
    findings, checked_eps = [], set()
    for rec in records:
        f = _Findings(rec.path or "?")
        findings.append(f)
        spec = datasets.get(rec.dataset) if rec.dataset in datasets else None
        if spec is None:
            unknown_data[rec.dataset] += 1
        proto, why = protocols.for_record(rec)
        if proto is not None and spec is not None:
            _check_eps(f, rec, proto, spec)
            checked_eps.add(id(rec))
        elif proto is None:
            unresolved[(rec.protocol.name, rec.protocol.version, why)] += 1
        if rec.path is not None and rec.path not in skip:
            _check_path(f, rec, Path(results_dir))
        _check_budget(f, rec, spec)
        _check_compression(f, rec)
        for part in ("standard", "adversarial"):
            _check_curve(f, rec, part, proto if part == "adversarial" else None)
    _check_eps_agree(records, findings, checked_eps)
    for f in findings:
        out.problems += f.lines()
    for (name, version, why), n in sorted(unresolved.items()):
        out.notes.append(f"{name} v{version}: ε of {n} record{'s' * (n != 1)} not re-derived from the protocol: {why}; "
                         "checked against the other records of the same protocol version, dataset and norm")
    for name, n in sorted(unknown_data.items()):
        out.notes.append(f"dataset '{name}' is not registered: the ε and class count of its {n} "
                         f"record{'s' * (n != 1)} not re-derived")
    return out


def _check_eps(f: _Findings, rec: Record, proto: Any, spec: Any) -> None:
    from .errors import ProtocolError

    where = f"protocol {proto.name} v{proto.version}"
    try:
        eps = proto.eps(rec.dataset, rec.norm, spec.input_dim)
    except ProtocolError:
        f.disagree("eps", rec.eps, f"{where} sets no ε for dataset '{rec.dataset}'")
        return
    if not _close(rec.eps, eps):
        linf = proto.eps(rec.dataset, "linf", spec.input_dim)
        how = f"ε∞ {linf:.6g}" + ("" if rec.norm == "linf" else f" over {spec.input_dim} inputs")
        f.disagree("eps", rec.eps, f"{where} gives {eps:.6g} for {rec.dataset} {rec.norm} ({how})")


def _check_eps_agree(records: list[Record], findings: list[_Findings], checked: set[int]) -> None:
    """The ε of a record not checked against its protocol agrees with the most common ε of its protocol version,
    dataset and norm (all of them are named where no value is the most common)."""
    groups: dict[tuple, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault((rec.protocol.name, rec.protocol.version, rec.dataset, rec.norm), []).append(i)
    for (name, version, dataset, norm), members in groups.items():
        values: list[float] = []  # distinct values, merged within the tolerance
        count: Counter = Counter()
        for i in members:
            v = next((u for u in values if _close(u, records[i].eps)), None)
            if v is None:
                values.append(v := records[i].eps)
            count[v] += 1
        if len(values) < 2:
            continue
        ranked = count.most_common()
        common = ranked[0][0] if ranked[0][1] > ranked[1][1] else None
        for i in members:
            rec = records[i]
            if id(rec) in checked or (common is not None and _close(rec.eps, common)):
                continue
            if common is not None:
                n, shown = count[common], f"{common:.6g}"
            else:
                theirs = sorted(u for u in values if not _close(u, rec.eps))
                n, shown = sum(count[u] for u in theirs), " or ".join(f"{u:.6g}" for u in theirs)
            findings[i].disagree("eps", rec.eps, f"{n} other record{'s' * (n != 1)} of {name} v{version} · {dataset} · "
                                 f"{norm} {'have' if n != 1 else 'has'} {shown} (one ε per protocol version, dataset "
                                 "and norm)")


def _check_path(f: _Findings, rec: Record, root: Path) -> None:
    """The record's path under the results folder names its cell (dataset, method, budget, ... and hash)."""
    try:
        rel = Path(rec.path).relative_to(root)
    except ValueError:
        return
    expected = rec.key.relpath()
    if rel == expected:
        return
    parts, want = rel.parts, expected.parts
    stem, want_stem = parts[-1].removesuffix(".json").split("_"), want[-1].removesuffix(".json").split("_")
    folder, want_folder = FOLDER.fullmatch(parts[0]), FOLDER.fullmatch(want[0])
    if len(parts) != len(want) or folder is None or want_folder is None or len(stem) != len(want_stem) or len(want_stem) != 7:
        f.line("path", f"{rel.as_posix()} is not the path of the record's cell, {expected.as_posix()}")
        return
    values = {"protocol/name": rec.protocol.name, "protocol/version": rec.protocol.version, "dataset": rec.dataset,
              "method/name": rec.method.name, "budget/ipc": rec.budget.ipc, "model": rec.model, "norm": rec.norm,
              "seed": rec.seed, "protocol/hash": rec.protocol.hash}
    pairs = [("protocol/name", want_folder[1], folder[1]), ("protocol/version", want_folder[2], folder[2]),
             ("dataset", want[1], parts[1]), ("method/name", want[2], parts[2]), *zip(NAME_FIELDS, want_stem, stem)]
    found = False
    for name, mine, theirs in pairs:
        if mine != theirs:
            f.disagree(name, values[name], f"its path {rel.as_posix()} says {theirs!r}")
            found = True
    if not found:
        f.line("path", f"{rel.as_posix()} is not the path of the record's cell, {expected.as_posix()}")


def _check_budget(f: _Findings, rec: Record, spec: Any) -> None:
    """The budget is the most images any class of the set holds; one count per class of the dataset; the set's
    weights recorded alike by the budget and adversarial training."""
    b = rec.budget
    counts = b.per_class_counts
    if b.ipc is not None and counts and max(counts) < b.ipc:
        f.disagree("budget/ipc", b.ipc, f"its per_class_counts hold at most {max(counts)} images per class")
    if spec is not None and len(counts) != spec.num_classes:
        f.line("budget/per_class_counts", f"counts for {len(counts)} classes, dataset '{rec.dataset}' has "
                                          f"{spec.num_classes}")
    weighted = rec.adversarial_training.get("weighted") if isinstance(rec.adversarial_training, dict) else None
    if isinstance(weighted, bool) and weighted != b.weighted:
        f.disagree("budget/weighted", b.weighted, f"adversarial_training/weighted says {weighted}")


def _check_compression(f: _Findings, rec: Record) -> None:
    """What the compression block repeats of the set's making: its dataset, method, kind and budget."""
    comp = rec.compression if isinstance(rec.compression, dict) else {}
    from_file = bool((rec.compressed_set or {}).get("from_file")) or " (file " in rec.method.name
    repeated = [("dataset", "dataset", rec.dataset), ("kind", "method/kind", rec.method.kind),
                ("budget", "budget/ipc", rec.budget.ipc)]
    if not from_file:  # an imported set is recorded as "<method> (file <hash>)"
        repeated.append(("method", "method/name", rec.method.name))
    for key, name, value in repeated:
        if key in comp and comp[key] != value:
            f.disagree(name, value, f"compression/{key} says {comp[key]!r}")


def _check_curve(f: _Findings, rec: Record, part: str, proto: Any) -> None:
    """The robustness curve of one evaluation: at most the clean accuracy everywhere, radii that are the
    multiples of ε, the robust accuracy at 1×ε, and (``proto``) the multiples the protocol sweeps."""
    ev = getattr(rec, part)
    curve = ev.eps_curve or []
    name = f"{part}/eps_curve"
    sweep = tuple(proto.evaluation.eps_sweep) if proto is not None else None
    if not curve:
        if sweep:
            f.line(name, f"missing, but protocol {proto.name} v{proto.version} sweeps ε × {', '.join(map(format_m, sweep))}")
        return
    number = (int, float)
    if not isinstance(curve, list) or not all(
            isinstance(p, dict) and all(isinstance(p.get(k), number) and not isinstance(p.get(k), bool)
                                        for k in ("multiple", "eps", "robust_acc")) for p in curve):
        f.line(name, "not a list of {multiple, eps, robust_acc} numbers")  # schema 1 does not say what it holds
        return
    above = [p for p in curve if p["robust_acc"] > ev.clean_acc + TOLERANCE]
    if above:
        f.line(name, f"robust accuracy above the clean accuracy {ev.clean_acc:.4f} of the same model at "
                     + ", ".join(f"{format_m(p['multiple'])}×ε ({p['robust_acc']:.4f})" for p in above))
    off = [p for p in curve if not _close(p["eps"], p["multiple"] * rec.eps)]
    if off:
        f.line(name, "radius not its multiple of eps " + f"{rec.eps:.6g}: "
               + ", ".join(f"{format_m(p['multiple'])}×ε is {p['eps']:.6g}" for p in off))
    at_one = [p for p in curve if p["multiple"] == 1.0]
    if at_one and abs(at_one[0]["robust_acc"] - ev.robust_acc) > TOLERANCE:
        f.line(name, f"robust accuracy {at_one[0]['robust_acc']:.4f} at 1×ε, but {part}/robust_acc is "
                     f"{ev.robust_acc:.4f}")
    multiples = [p["multiple"] for p in curve]
    if len(set(multiples)) != len(multiples):
        f.line(name, f"multiples of ε repeat: {', '.join(map(format_m, multiples))}")
    elif sweep is not None and sorted(multiples) != sorted(sweep):
        f.line(name, f"multiples of ε {', '.join(map(format_m, sorted(multiples)))}, but protocol {proto.name} "
                     f"v{proto.version} sweeps {', '.join(map(format_m, sweep)) or 'none'}")


def format_m(m: float) -> str:
    return f"{m:g}"


def method_blocks(method: str) -> tuple[str, ...]:
    """The shared protocol blocks a registered method takes (none for an unknown or imported one)."""
    from .registry import registries

    methods = registries().methods
    return tuple(methods.get(method).protocol_blocks) if method in methods else ()
