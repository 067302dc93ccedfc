"""Writes that never leave a half-written file, and a lock against two builds in one folder."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from kohaku_prep.errors import PrepError


def new_temp_path(path: Path) -> Path:
    """A temporary name beside `path` that did not exist (created empty): never someone else's file."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would follow the file to its final name
    os.close(fd)
    return Path(name)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a new temporary name beside `path`, then rename over it."""
    tmp = new_temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


RECORD = ".kohaku-prep-files.json"  # in a folder of files this tool wrote: each file's sha256


def _sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


class OwnedFiles:
    """Writes files into a folder that may hold the user's own: a file is overwritten (or removed as stale)
    only when this tool wrote it and it still holds what was written, by the record kept beside them, or
    when it already holds exactly the new content (nothing is lost: a folder written before the record
    existed). Every target is checked before the first write, so a refusal leaves everything as it was."""

    def __init__(self, root: Path, what: str):
        self.root, self.what = root, what
        if root.exists() and not root.is_dir():
            raise PrepError(f"{root}: is a file, not a folder ({what})")
        record = root / RECORD
        try:
            self.recorded: dict[str, str] = json.loads(record.read_text()) if record.exists() else {}
            if not all(isinstance(v, str) for v in self.recorded.values()):
                raise ValueError
        except (OSError, ValueError, AttributeError):
            raise PrepError(f"{record}: not a record kohaku-prep wrote; move it away") from None

    def _ours(self, name: str) -> bool:
        path = self.root / name
        return not path.is_symlink() and path.is_file() and self.recorded.get(name) == _sha256(path)

    def _holds(self, name: str, content: bytes) -> bool:
        path = self.root / name
        return not path.is_symlink() and path.is_file() and _sha256(path) == hashlib.sha256(content).hexdigest()

    def write_all(self, files: Mapping[str, bytes | str], prune: bool = False) -> list[Path]:
        """Write `files` (relative name -> content) atomically each; with `prune`, remove the files an earlier
        write recorded that are not written now (only those unchanged since). Returns the paths written."""
        contents = {name: data.encode("utf-8") if isinstance(data, str) else bytes(data)
                    for name, data in files.items()}
        for name in sorted(contents):
            path = self.root / name
            in_the_way = path.exists() or path.is_symlink()
            if in_the_way and not self._ours(name) and not self._holds(name, contents[name]):
                raise PrepError(f"{path}: not written by kohaku-prep, or changed since; it is left as it is and "
                                f"nothing was written: move it away or choose another {self.what}")
        stale = sorted(n for n in self.recorded if n not in files and self._ours(n)) if prune else []
        written = []
        for name, content in sorted(contents.items()):
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, content)
            self.recorded[name] = hashlib.sha256(content).hexdigest()
            written.append(path)
        for name in stale:
            (self.root / name).unlink()
            del self.recorded[name]
        kept = {n: h for n, h in self.recorded.items() if (self.root / n).exists()}
        write_atomic(self.root / RECORD, json.dumps(kept, indent=2, sort_keys=True) + "\n")
        return written
