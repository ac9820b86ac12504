"""Dataset files without a network: which are in place, and installing copies brought from elsewhere.

A ``DatasetSpec`` declares the files its loader reads (``DataFile``: path under the data root, md5 of
the content). ``import_files`` identifies each given file by the md5 of its content: a gzip (or bzip2,
xz) file is decompressed as it is read and its own md5 never compared (copies of one data set differ
in their gzip headers), and a tar archive by its members. Content decides, names do not: a
renamed copy is installed under the name the loader expects, and its line says what it was called.

Every file is checked before anything is written: one wrong, truncated, unknown, unreadable or
duplicate file refuses the whole import with one message and the data root stays as it was. Files
are written to a temporary file in the target folder, fsynced, then linked into place, so a loader
never sees half a file; an identical file already there is left alone, a different one is never
replaced. Archive members are never extracted by their own names: only members whose content is a
declared file are written, at the declared path, so an archive cannot write anywhere else.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .datasets import DataFile, DataFiles, DatasetSpec
from .errors import DatasetError, DcrobenchError, one_line, one_line_text
from .fileio import atomic_write_new

CHUNK = 1 << 20
# a compressed file's first bytes -> how to read it decompressed
DECOMPRESSORS = {b"\x1f\x8b": lambda fh: gzip.GzipFile(fileobj=fh), b"BZh": bz2.BZ2File, b"\xfd7zXZ\x00": lzma.LZMAFile}
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")
# what reading a damaged gzip or tar stream raises
UNREADABLE = (OSError, EOFError, zlib.error, tarfile.TarError)


def _md5():
    return hashlib.md5(usedforsecurity=False)


def _stream(src: BinaryIO, dst: BinaryIO | None = None) -> tuple[str, int]:
    """Read ``src`` to its end (copying it into ``dst`` if given): the md5 and size of its bytes."""
    digest, size = _md5(), 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if dst is not None:
            dst.write(chunk)
    return digest.hexdigest(), size


@contextmanager
def _content(path: Path) -> Iterator[BinaryIO]:
    """The bytes a loader reads from ``path``: a compressed file decompressed, any other file as it is."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        fh.seek(0)
        decompress = next((d for magic, d in DECOMPRESSORS.items() if head.startswith(magic)), None)
        if decompress is None:
            yield fh
        else:
            with decompress(fh) as plain:
                yield plain


def _plain_name(name: str) -> str:
    """A file's name without its compression suffix: train-images-idx3-ubyte.gz -> train-images-idx3-ubyte."""
    return next((name.removesuffix(s) for s in COMPRESSED_SUFFIXES if name.endswith(s)), name)


def _file_md5(path: Path) -> str:
    with open(path, "rb") as fh:
        return _stream(fh)[0]


@dataclass(frozen=True)
class Match:
    """A given file (or archive member) whose content is a declared file."""

    given: Path
    file: DataFile
    member: str | None = None  # the archive member, for a file given inside an archive
    archive: str | None = None  # the declared archive the given one is byte-identical to
    present: bool = False  # an identical file is already at the declared path

    @property
    def source(self) -> str:
        return f"{self.given}:{self.member}" if self.member else str(self.given)

    def line(self) -> str:
        if self.present:
            return f"already present {self.file.path} (identical to {self.source})"
        official = f", the official {self.archive}" if self.archive else ""
        given_name = PurePosixPath(self.member).name if self.member else _plain_name(self.given.name)
        renamed = f"; recognised by content, it was named {given_name}" if given_name != self.file.name else ""
        return f"installed {self.file.path} (from {self.source}{official}{renamed})"


# --- what is in place ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetState:
    name: str
    verified: DataFiles = ()
    missing: DataFiles = ()  # required files only: an optional one may be absent
    damaged: tuple[tuple[DataFile, str], ...] = ()  # (file, why)
    archives: tuple[str, ...] = ()  # the names of the archives the files come in

    @property
    def state(self) -> str:
        if not (self.verified or self.missing or self.damaged):
            return "embedded"
        return "damaged" if self.damaged else "missing" if self.missing else "present"

    def detail(self) -> str:
        if self.state == "embedded":
            return "no files to put in place, always present"
        if self.state == "present":
            return f"{len(self.verified)} files verified"
        parts = [f"{f.path} ({why})" for f, why in self.damaged]
        if self.missing and not (self.verified or self.damaged):
            archives = f" (archive: {', '.join(self.archives)})" if self.archives else ""
            parts.append(f"none of its {len(self.missing)} files in place{archives}")
        elif self.missing:
            parts.append(f"{len(self.missing)} files missing: " + ", ".join(f.path for f in self.missing))
        return "; ".join(parts)

    def row(self, width: int) -> str:
        return f"{self.name:<{width}}  {self.state:<8}  {self.detail()}"

    def summary(self) -> str:
        """The line that ends an import or fetch."""
        if self.state == "present":
            return f"{self.name}: complete, {self.detail()}"
        if self.state == "embedded":
            return f"{self.name}: embedded, {self.detail()}"
        return f"{self.name}: not complete: {self.detail()}"


def _damage(file: DataFile, path: Path) -> str | None:
    """Why the file at ``path`` is not ``file`` (None: it is)."""
    try:
        size = path.stat().st_size
        if file.size is not None and size != file.size:
            return f"{size} bytes, expected {file.size}"
        md5 = _file_md5(path)
    except OSError as exc:
        return f"unreadable: {one_line(exc)}"
    return None if md5 == file.md5 else f"md5 {md5}, expected {file.md5}"


def dataset_state(spec: DatasetSpec, root: Path) -> DatasetState:
    """Each declared file of ``spec`` under ``root``: verified (md5 of its content), damaged or missing."""
    verified, missing, damaged = [], [], []
    for file in spec.data_files():
        path = root / file.path
        if not path.is_file():
            if file.required:
                missing.append(file)
            continue
        why = _damage(file, path)
        if why is None:
            verified.append(file)
        else:
            damaged.append((file, why))
    archives = tuple(a.path for a in spec.data_archives())
    return DatasetState(spec.name, tuple(verified), tuple(missing), tuple(damaged), archives)


# --- identifying given files -----------------------------------------------------------------------
def _readable_file(path: Path) -> None:
    if path.is_dir():
        raise DatasetError(f"{path} is a folder, not a file: name the files in it")
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if not path.is_file():
        raise DatasetError(f"{path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise DatasetError(f"cannot read {path}: permission denied")


def _no_match(path: Path, spec: DatasetSpec, files: DataFiles, md5: str, size: int) -> DatasetError:
    """The refusal of a file whose content is none of ``files``; a same-named one says how it differs."""
    same_name = next((f for f in files if f.name == _plain_name(path.name)), None)
    if same_name is None:
        names = ", ".join(f.name for f in files)
        return DatasetError(f"{path} (content md5 {md5}, {size} bytes) is none of the files of dataset '{spec.name}' "
                            f"({names}): a truncated or different file?")
    sizes, hint = "", "a different file or version?"
    if same_name.size not in (None, size):
        sizes = f"; {size} bytes instead of {same_name.size}"
        hint = "truncated?" if size < same_name.size else hint
    return DatasetError(f"{path} is not the {same_name.name} of dataset '{spec.name}': content md5 {md5}, expected "
                        f"{same_name.md5}{sizes} ({hint})")


def _identify_file(path: Path, spec: DatasetSpec, files: DataFiles) -> Match:
    try:
        with _content(path) as src:
            md5, size = _stream(src)
    except UNREADABLE as exc:
        raise DatasetError(f"cannot read {path}: {one_line(exc)} (a damaged or truncated file?)") from None
    file = next((f for f in files if f.md5 == md5), None)
    if file is None:
        raise _no_match(path, spec, files, md5, size)
    return Match(path, file)


def _identify_archive(path: Path, spec: DatasetSpec, files: DataFiles) -> list[Match]:
    """The members of a tar archive that are declared files; other members are ignored (never written)."""
    by_name = {f.name: f for f in files}
    matches = []
    try:
        with _content(path) as src:
            with tarfile.open(fileobj=src, mode="r|") as tar:
                for member in tar:
                    if not member.isreg():
                        continue
                    md5, _ = _stream(tar.extractfile(member))
                    file = next((f for f in files if f.md5 == md5), None)
                    if file is not None:
                        matches.append(Match(path, file, member.name))
                    elif PurePosixPath(member.name).name in by_name:
                        raise DatasetError(f"{path}: member {member.name} is not the {PurePosixPath(member.name).name} "
                                           f"of dataset '{spec.name}' (content md5 {md5}): a damaged archive?")
            _stream(src)  # to the end: a compressed archive cut after the tar's end marker fails here
        archive_md5 = _file_md5(path)
    except UNREADABLE as exc:
        raise DatasetError(f"cannot read archive {path}: {one_line(exc)} (a damaged or truncated file?)") from None
    if not matches:
        raise DatasetError(f"archive {path} holds none of the files of dataset '{spec.name}'")
    official = next((a.path for a in spec.data_archives() if a.md5 == archive_md5), None)
    return [replace(m, archive=official) for m in matches]


def _is_archive(path: Path) -> bool:
    """Whether ``path`` (decompressed) starts with a valid tar header."""
    try:
        with _content(path) as src:
            tarfile.TarInfo.frombuf(src.read(tarfile.BLOCKSIZE), tarfile.ENCODING, "surrogateescape")
        return True
    except UNREADABLE:  # not an archive: reading it as a file says what is wrong with it
        return False


def _identify(path: Path, spec: DatasetSpec, files: DataFiles) -> list[Match]:
    _readable_file(path)
    return _identify_archive(path, spec, files) if _is_archive(path) else [_identify_file(path, spec, files)]


def _refuse_duplicates(matches: list[Match]) -> None:
    first: dict[DataFile, Match] = {}
    for m in matches:
        other = first.get(m.file)
        if other is not None and (m.given.resolve(), m.member) == (other.given.resolve(), other.member):
            raise DatasetError(f"{m.source} is given twice: give each file once")
        if other is not None:
            raise DatasetError(f"{m.source} and {other.source} are both {m.file.path}: give each file once")
        first[m.file] = m


def _creatable(dest: Path) -> None:
    """Refuse now, before anything is written, a path whose folder cannot be made or written."""
    folder = dest.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise DatasetError(f"cannot write {dest}: {folder} is not a writable folder")


def _at_destination(match: Match, root: Path) -> Match:
    dest = root / match.file.path
    if not os.path.lexists(dest):
        _creatable(dest)
        return match
    if dest.is_file() and _damage(match.file, dest) is None:
        return replace(match, present=True)
    raise DatasetError(f"{dest} is already there with other content; move it away to import {match.source} "
                       "(an existing file is never replaced)")


def check_import(spec: DatasetSpec, root: Path, given: Sequence[Path]) -> list[Match]:
    """What importing ``given`` would install; refuses (DatasetError) before anything is written."""
    files = spec.data_files()
    if not files:
        raise DatasetError(f"dataset '{spec.name}' is embedded: it has no files to import")
    matches = [m for path in given for m in _identify(Path(path), spec, files)]
    _refuse_duplicates(matches)
    return [_at_destination(m, root) for m in matches]


# --- installing -------------------------------------------------------------------------------------
def _install(src: BinaryIO, root: Path, match: Match) -> None:
    dest = root / match.file.path

    def write(fh: BinaryIO) -> None:
        md5, _ = _stream(src, fh)
        if md5 != match.file.md5:  # changed since it was checked
            raise DatasetError(f"{match.source} changed while it was imported (md5 {md5}); nothing written for it")

    try:
        atomic_write_new(dest, write)
    except FileExistsError:
        raise DatasetError(f"{dest} appeared while importing; left as it is") from None
    except OSError as exc:
        raise DatasetError(f"cannot write {dest} ({one_line(exc)})") from None


def _install_members(archive: Path, root: Path, matches: list[Match]) -> None:
    wanted = {m.member: m for m in matches}
    with _content(archive) as src, tarfile.open(fileobj=src, mode="r|") as tar:
        for member in tar:
            match = wanted.pop(member.name, None)
            if match is not None and member.isreg():
                _install(tar.extractfile(member), root, match)


def import_files(spec: DatasetSpec, root: Path, given: Sequence[Path]) -> list[Match]:
    """Check every given file, then install those not already in place; returns what each one became."""
    matches = check_import(spec, root, given)
    pending = [m for m in matches if not m.present]
    try:
        for m in pending:
            if m.member is None:
                with _content(m.given) as src:
                    _install(src, root, m)
        for archive in dict.fromkeys(m.given for m in pending if m.member is not None):
            _install_members(archive, root, [m for m in pending if m.given == archive])
    except UNREADABLE as exc:  # read a moment ago: changed or gone since
        raise DatasetError(f"reading the given files failed while importing: {one_line(exc)}") from None
    return matches


def fetch(spec: DatasetSpec, root: Path) -> DatasetState:
    """Download with the spec's own loader (torchvision), then verify every declared file."""
    if not spec.data_files():
        return dataset_state(spec, root)
    try:
        spec.load(root, True)
    except Exception as exc:
        raise DatasetError(f"cannot download dataset '{spec.name}', no network? ({_reason(exc)}) Without one, copy its "
                           f"files from a machine with one and run `dcrobench data import {spec.name} FILE...` "
                           "(README: Data without a network)") from None
    state = dataset_state(spec, root)
    if state.state != "present":
        raise DatasetError(f"dataset '{spec.name}' does not verify after fetching: {state.detail()} (a file already "
                           "there is kept: move a damaged one away and fetch again)")
    return state


def _reason(exc: Exception) -> str:
    """One short line: torchvision's download errors list every mirror tried on lines of their own."""
    return one_line_text(str(exc)) if isinstance(exc, DcrobenchError) else one_line(exc)
