"""Atomic writes: a reader sees the old file or the new one, never half of one. Claims: one maker per file."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import AlreadyRunningError, DcrobenchError, one_line


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask can only set it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _link_new(tmp: str, path: Path) -> None:
    """Publish ``tmp`` as ``path`` unless ``path`` exists (FileExistsError): a hard link never replaces a file."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)


def _atomic_write(path: Path, write, publish=os.replace) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a shared results folder must stay readable
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def json_bytes(obj: Any) -> bytes:
    """``obj`` as the JSON files dcrobench writes (indented, keys sorted, a final newline)."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(Path(path), lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_new(path: Path, write) -> None:
    """``write(fh)`` into a new file at ``path``, atomically; FileExistsError (nothing changed) if ``path`` exists."""
    _atomic_write(Path(path), write, publish=_link_new)


def atomic_write_new_or_same(path: Path, data: bytes) -> None:
    """``data`` as a new file at ``path``; an existing file is kept when it holds exactly ``data`` (this very output,
    written before), else FileExistsError."""
    try:
        atomic_write_new(path, lambda fh: fh.write(data))
    except FileExistsError:
        if Path(path).read_bytes() != data:
            raise


def atomic_torch_save(obj: Any, path: Path, new: bool = False) -> None:
    """``torch.save`` to ``path`` atomically; ``new``: FileExistsError instead of replacing an existing file."""
    _atomic_write(Path(path), lambda fh: torch.save(obj, fh), publish=_link_new if new else os.replace)


def ensure_writable_dir(path: str | Path, what: str) -> Path:
    """Create ``path`` if needed and prove a file can be written there, before any work is spent."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".dcrobench-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DcrobenchError(f"{what} {path} is not a writable folder ({one_line(exc)})") from None
    return path


CLAIM_SUFFIX = ".lock"
#: errors of a file system that has no flock (some Lustre and old NFS mounts): the claim is then skipped
_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}


@contextlib.contextmanager
def claim(path: str | Path) -> Iterator[None]:
    """Hold the claim on making ``path`` (a lock on ``<path>.lock``, which names this process) until the block ends.

    A second claimant gets AlreadyRunningError at once, naming the holder's pid: it does not wait. The lock is an
    flock, which the kernel drops when its holder dies, so a lock file left behind by a killed process never blocks.
    """
    path = Path(path)
    lock_path = path.with_name(path.name + CLAIM_SUFFIX)
    fd = _lock(lock_path, path)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)  # before the lock goes: whoever opened this file meanwhile sees it gone and retries
        os.close(fd)


def _lock(lock_path: Path, made: Path) -> int:
    """An open descriptor of ``lock_path`` holding its flock, with this process's pid written in it."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                _flock(fd, made)
                if _is_current(fd, lock_path):
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # its holder released (and removed) it between our open and our lock: again
    except OSError as exc:
        raise DcrobenchError(f"cannot claim {lock_path} ({exc.strerror or exc})") from None


def _flock(fd: int, made: Path) -> None:
    """Lock ``fd`` without waiting; AlreadyRunningError naming the holder when another process is making ``made``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        raise AlreadyRunningError(f"already running (pid {holder}): another process is making {made}; "
                                  "re-run the command when it has finished") from None
    except OSError as exc:
        if exc.errno not in _NO_FLOCK:
            raise


def _is_current(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not one a releasing holder has just unlinked)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
