"""Writes that never leave a half-written file, and a lock against two builds in one folder."""
from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from kohaku_prep.errors import PrepError


def write_atomic(path: Path, data: bytes | str, fsync: bool = False) -> None:
    """Write to a temporary name beside `path`, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def write_new(path: str | Path, data: bytes | memoryview, dir_fd: int | None = None) -> None:
    """Write a file in place, for the many small files of a staging folder: only the folder is published,
    and a write cut off by a crash leaves a short file, which a resumed build finds by its size."""
    try:
        fd = os.open(path, _NEW_FILE, 0o644, dir_fd=dir_fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:  # ENOSPC from write() names no file
        raise OSError(exc.errno, exc.strerror, exc.filename or str(path)) from None


class FolderLock:
    """An exclusive advisory lock on `folder/.lock`, released when the process ends."""

    def __init__(self, folder: Path):
        self.path = folder / ".lock"

    def __enter__(self) -> "FolderLock":
        self.fh = open(self.path, "w")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise PrepError(f"{self.path.parent}: another build is writing here") from None
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def fingerprint(path: Path, edge: int = 1 << 20) -> str:
    """sha256 over the size, first and last MiB: cheap on gigabytes, and covers a Parquet footer."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(edge))
        if size > edge:
            fh.seek(max(edge, size - edge))
            h.update(fh.read(edge))
    return h.hexdigest()
