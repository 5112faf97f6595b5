"""Atomic directory saves and consistent directory reads, shared by bundles and item indexes.

Saving: a new artifact is written into a private staging directory next to the path and fsynced.
A path that does not exist yet receives it by one ``rename``. An existing path is replaced by a
switch: the staged directory becomes an immutable version ``.<name>.versions/<id>/`` and ``<name>``
becomes a symlink to it, replaced with one ``os.replace`` of a new symlink (a plain directory left by
an older recsys is swapped for the symlink with Linux's ``RENAME_EXCHANGE`` where the file system
offers it). A reader of the path therefore finds the old artifact or the new one, never none and
never a mix. After the switch the writer removes versions that are no longer current and staging
directories of writers that are gone (their names carry host and pid; a kill leaves them behind
and the next save on that path removes them).

Reading: :class:`DirSnapshot` opens the directory once (following the symlink once) and reads every
file relative to that open directory, so a concurrent switch cannot mix versions; if the writer
removes the version being read, the read fails and :meth:`DirSnapshot.replaced` tells the caller
to start again on the new version.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import shutil
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

__all__ = ["staging_dir", "fsync_tree", "fsync_path", "file_sha256", "publish", "discard", "DirSnapshot",
           "read_consistent", "write_text_atomically"]

T = TypeVar("T")

_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40] or "host"
_TAG = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-(?P<rand>[0-9a-f]{8})$")
_LEGACY = re.compile(r"^[0-9a-f]{8}$")  # recsys <= 0.1 named its temporaries .<name>.tmp-<8 hex>
_FOREIGN_STALE_S = 24 * 3600  # a staging dir of another host is only presumed dead after a day
_LEGACY_STALE_S = 3600
_PUBLISH = threading.Lock()  # threads of one process publish one at a time (they share a pid)


def _tag() -> str:
    return f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def staging_dir(path: Path) -> Path:
    """A new, empty staging directory beside ``path`` (mode follows the umask), named after this process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{_tag()}"
    tmp.mkdir()
    return tmp


def discard(p: Path) -> None:
    """Remove a file, symlink or directory tree if it is there."""
    if p.is_symlink() or p.is_file():
        p.unlink(missing_ok=True)
    else:
        shutil.rmtree(p, ignore_errors=True)


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write one text file (a report, a JSON result, a YAML config) so that a reader finds the old file or the
    new one, whole: a temporary file beside it, fsynced, renamed over it, the folder fsynced; the temporary is
    removed if anything fails, and those of writers killed before their rename are removed by the next write.
    Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{_tag()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    _clean(path)  # temporaries of writers killed before their rename
    return path


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder: so a rename inside it is durable); file systems that cannot fsync a
    folder are let be (the rename is still atomic)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (before it is published)."""
    for p in sorted(root.rglob("*"), reverse=True):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        fsync_path(d)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not offered."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(entry: Path, tag: str, *, own_is_stale: bool) -> bool:
    """Whether a staging/version entry belongs to no running writer."""
    m = _TAG.match(tag)
    if m is None:
        if not _LEGACY.match(tag):
            return False
        try:
            return time.time() - entry.lstat().st_mtime > _LEGACY_STALE_S
        except OSError:
            return False
    pid = int(m["pid"])
    if m["host"] != _HOST:
        try:
            return time.time() - entry.lstat().st_mtime > _FOREIGN_STALE_S
        except OSError:
            return False
    if pid == os.getpid():
        return own_is_stale
    return not pid_alive(pid)


def _current(path: Path) -> str | None:
    try:
        return os.readlink(path).rstrip("/").rsplit("/", 1)[-1]
    except OSError:  # not a symlink (a plain directory) or gone
        return None


def _clean(path: Path) -> None:
    """Remove what dead writers left beside ``path`` and versions that are no longer current."""
    prefix = f".{path.name}."
    for entry in list(path.parent.iterdir()):
        name = entry.name
        if not name.startswith(prefix):
            continue
        kind, _, tag = name[len(prefix):].partition("-")
        if kind == "old" or (kind in ("tmp", "link") and _stale(entry, tag, own_is_stale=False)):
            discard(entry)
    versions = path.parent / f".{path.name}.versions"
    if not versions.is_dir():
        return
    for entry in list(versions.iterdir()):
        stale = _stale(entry, entry.name.partition("-")[2], own_is_stale=True)
        if stale and entry.name != _current(path):  # read again: another process may have switched meanwhile
            discard(entry)
    if _current(path) is None and not any(versions.iterdir()):
        versions.rmdir()


def publish(tmp: Path, path: Path) -> None:
    """Make the fsynced staging directory ``tmp`` the content of ``path`` in one atomic step, then clean up."""
    with _PUBLISH:
        if not os.path.lexists(path):
            try:
                os.rename(tmp, path)
            except OSError as e:  # another writer created the path meanwhile: switch instead
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise
            else:
                fsync_path(path.parent)
                _clean(path)
                return
        versions = path.parent / f".{path.name}.versions"
        versions.mkdir(exist_ok=True)
        version = f"{time.time_ns()}-{_tag()}"
        os.rename(tmp, versions / version)
        fsync_path(versions)
        link = path.parent / f".{path.name}.link-{_tag()}"
        os.symlink(f"{versions.name}/{version}", link)
        if path.is_symlink():
            os.replace(link, path)
        elif _exchange(link, path):
            discard(link)  # it now holds the plain directory that was at the path
        else:  # no atomic exchange here: the only moment without an artifact, once per path
            old = path.parent / f".{path.name}.old-{_tag()}"
            os.rename(path, old)
            os.replace(link, path)
            discard(old)
        fsync_path(path.parent)
        _clean(path)


def write_atomically(path: Path, fill: Callable[[Path], T]) -> T:
    """Fill a staging folder beside ``path``, fsync it whole and publish it in one step (:func:`publish`); on any
    failure, the staging folder is removed and ``path`` keeps what it held. Returns what ``fill`` returned.

    Every checksummed directory of the library (bundles, item indexes) is written through this function."""
    tmp = staging_dir(path)  # not tempfile.mkdtemp: its 0700 would hide the artifact from other accounts
    try:
        out = fill(tmp)
        fsync_tree(tmp)
        publish(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    return out


def read_hashed(fh: BinaryIO, limit: int, sink: BinaryIO | None = None) -> tuple[int, str, bytes | None]:
    """Read an open file once, at most ``limit`` bytes and one more (to notice a longer file): (size read, sha256
    of exactly those bytes, the bytes, or None when they went to ``sink`` block by block). Callers compare the
    size and digest with their manifest, so the bytes checked are the bytes used."""
    h, size, kept = hashlib.sha256(), 0, []
    while size <= limit:
        block = fh.read(min(1 << 20, limit + 1 - size))
        if not block:
            break
        size += len(block)
        h.update(block)
        if sink is None:
            kept.append(block)
        else:
            sink.write(block)
    return size, h.hexdigest(), None if sink is not None else b"".join(kept)


class DirSnapshot:
    """A directory opened once: every read resolves against it, whatever later replaces the path."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)

    def __enter__(self) -> DirSnapshot:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._fd)

    def open(self, rel: str):
        """A binary file object for ``rel`` (a relative POSIX path) inside the opened directory."""
        fd = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self._fd)
        return os.fdopen(fd, "rb")

    def read(self, rel: str, limit: int | None = None) -> bytes:
        """The bytes of ``rel``; ``limit``: read at most this many bytes (plus one, to notice more)."""
        with self.open(rel) as fh:
            return fh.read() if limit is None else fh.read(limit + 1)

    def read_hashed(self, rel: str, limit: int) -> tuple[int, str, bytes]:
        """Read ``rel`` once (:func:`read_hashed`): (size read, sha256 of exactly those bytes, the bytes)."""
        with self.open(rel) as fh:
            return read_hashed(fh, limit)

    def listing(self) -> tuple[list[str], list[str]]:
        """(regular files, symlinks) under the directory, as relative POSIX paths."""
        files, links = [], []
        for top, dirs, names, dfd in os.fwalk(".", dir_fd=self._fd):
            rel = "" if top == "." else top[2:] + "/"
            for n in dirs + names:
                st = os.stat(n, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    links.append(rel + n)
                elif n in names:
                    files.append(rel + n)
        return files, links

    def replaced(self) -> bool:
        """Whether the path now names another directory (or none) than the one opened."""
        try:
            now = os.stat(self.path)
        except OSError:
            return True
        mine = os.fstat(self._fd)
        return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino) or mine.st_nlink == 0


def read_consistent(path: Path, work: Callable[[DirSnapshot], T], *, missing: str, attempts: int = 8) -> T:
    """``work(snapshot)`` on one opened version of the directory at ``path``, started again when a writer
    replaced that version meanwhile (an error then is the writer's doing, not the artifact's). ``missing``: the
    ArtifactError message when there is no directory at ``path``."""
    from recsys.errors import ArtifactError

    for _ in range(attempts):
        try:
            snap = DirSnapshot(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ArtifactError(missing) from None
        with snap:
            try:
                return work(snap)
            except (ArtifactError, OSError):
                if not snap.replaced():
                    raise
    raise ArtifactError(f"{path} was replaced {attempts} times while it was being read; retry when the writer "
                        "saving it so often has finished")
