"""One writer per output: OS file locks held while a job runs (private).

Two runs writing the same output at once would interleave or truncate each other's work,
and both could end "succeeded". So a run locks every output before it opens anything:

* an output file ``out.jsonl`` is guarded by ``.out.jsonl.lock`` next to it (next to the
  file the path resolves to, so a symbolic link and its target share one lock);
* a folder the job owns (its checkpoint folder) by ``.asyncwait.lock`` inside it (the
  folder is created, owner-only, if missing).

The lock is ``flock(LOCK_EX | LOCK_NB)`` on the lock file: a second run gets it refused at
once and reports who holds it (the holder writes its pid, host and start time into the
file). The kernel releases a lock when its process ends, however it ends, so ``kill -9``
never leaves a stale lock: a lock file whose lock is free is simply taken again.

Lock files: a run removes the lock files it created when it releases them; a lock file it
found (left by a killed run, or made by anyone else) is used and left in place. Removal
cannot let two runs in: a run that locked a file checks that the file is still the one at
the path, else it starts over.

>>> import tempfile
>>> from pathlib import Path
>>> from asyncwait._paths import Access, PathUse, resolve
>>> out = resolve(PathUse("sink.path", Path(tempfile.mkdtemp()) / "out.jsonl", Access.WRITE))
>>> with lock_outputs([out], owner="job 'demo'") as held:
...     [lock.path.name for lock in held.locks]
['.out.jsonl.lock']
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Final, final

from ._paths import Access, Resolved, make_private_dirs, shown
from .errors import ConfigError

__all__ = ("FOLDER_LOCK", "Lock", "Locks", "holder_of", "lock_file", "lock_outputs")

FOLDER_LOCK: Final = ".asyncwait.lock"
"""The lock file inside a folder the job owns."""

_RECORD_LIMIT: Final = 4096  # bytes of a holder record read back


def lock_file(output: Resolved) -> Path:
    """The lock file guarding ``output``: ``.<name>.lock`` beside it, or inside a folder."""
    if output.use.folder:
        return output.real / FOLDER_LOCK
    return output.real.with_name(f".{output.real.name}.lock")


def _record() -> bytes:
    started = datetime.now(UTC).astimezone().isoformat(timespec="seconds")
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
    return (json.dumps(holder) + "\n").encode()


def holder_of(lock: Path) -> str:
    """Who holds ``lock``, as its holder wrote it: ``process 123 on host h (since ...)``."""
    try:
        with open(lock, "rb") as file:
            text = file.read(_RECORD_LIMIT)
        record = json.loads(text)
        pid, host, started = record["pid"], record["host"], record["started"]
    except (OSError, ValueError, TypeError, KeyError):
        return "another process"  # it has not written its record yet, or not ours
    return f"process {pid} on host {host} (since {started})"


@final
class Lock:
    """One held lock: an open lock file with ``flock`` on it.

    Attributes:
        path: the lock file.
        created: this run created the lock file (and removes it on release).
    """

    __slots__ = ("_fd", "created", "path")

    def __init__(self, path: Path, fd: int, *, created: bool) -> None:
        self.path = path
        self._fd: int | None = fd
        self.created = created

    def __repr__(self) -> str:
        state = "held" if self._fd is not None else "released"
        return f"<Lock {str(self.path)!r} {state}>"

    @property
    def held(self) -> bool:
        """Whether this lock is still held."""
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (removing the lock file if this run created it); idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self.created:
                # Still locked while it goes: a run that opened the file before the unlink
                # and locks it after sees that it is no longer at the path, and starts over.
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        finally:
            os.close(fd)  # releases the flock


def _open(path: Path) -> tuple[int, bool]:
    """Open (creating if missing) the lock file; ``(fd, created)``."""
    flags = os.O_RDWR | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    while True:
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            pass
        try:
            return os.open(path, flags), False
        except FileNotFoundError:
            continue  # removed by its previous holder just now: create it


def _cannot(owner: str, field: str, guarded: Path, path: Path, exc: OSError) -> ConfigError:
    reason = exc.strerror or exc
    msg = f"{owner}: {field}: cannot lock {shown(guarded)}: {shown(path)}: {reason}"
    return ConfigError(msg)


def acquire(path: Path, *, field: str, guarded: Path, owner: str) -> Lock:
    """Lock ``path`` without waiting, for the output ``guarded`` named by ``field``.

    Raises:
        ConfigError: another process holds the lock (naming it and the lock file), or the
            lock file cannot be opened.
    """
    while True:
        try:
            fd, created = _open(path)
        except OSError as exc:
            raise _cannot(owner, field, guarded, path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _cannot(owner, field, guarded, path, exc) from None
            msg = (
                f"{owner}: {field}: {shown(guarded)} is being written by another run: "
                f"{holder_of(path)} holds the lock {shown(path)}; wait until it ends "
                "(or stop it), then run again"
            )
            raise ConfigError(msg) from None
        try:
            mine = os.fstat(fd)
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if now is None or (mine.st_dev, mine.st_ino) != (now.st_dev, now.st_ino):
            os.close(fd)  # the holder removed this file before we locked it: start over
            continue
        record = _record()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        return Lock(path, fd, created=created)


@final
class Locks:
    """The locks of one run: taken all or none, released together (a context manager)."""

    __slots__ = ("locks",)

    def __init__(self, locks: list[Lock]) -> None:
        self.locks = locks

    def __repr__(self) -> str:
        return f"<Locks {len(self.locks)} {[str(lock.path) for lock in self.locks]}>"

    def release(self) -> None:
        """Release every lock, the last taken first; idempotent."""
        problems: list[OSError] = []
        for lock in reversed(self.locks):
            try:
                lock.release()
            except OSError as exc:
                problems.append(exc)
        if problems:
            raise problems[0]

    def __enter__(self) -> Locks:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _guarded(output: Resolved) -> bool:
    """Whether ``output`` gets a lock: files and owned folders, not devices or pipes."""
    if output.use.folder or output.inode is None:
        return True
    try:
        return output.real.is_file()
    except OSError:
        return True


def lock_outputs(outputs: Iterable[Resolved], *, owner: str) -> Locks:
    """Lock every output of ``outputs`` (inputs are skipped), all or none.

    A folder the job owns is created (owner-only) so that its lock file can go inside.
    An existing output that is not a regular file (``/dev/null``) is not locked.

    Args:
        outputs: resolved uses of the job (see :func:`asyncwait._paths.check_no_alias`).
        owner: what messages start with.

    Raises:
        ConfigError: a lock is held by another run, or cannot be taken; nothing is held.
    """
    taken: list[Lock] = []
    seen: set[Path] = set()
    try:
        for output in outputs:
            if output.use.access is not Access.WRITE or not _guarded(output):
                continue
            path = lock_file(output)
            if path in seen:
                continue
            seen.add(path)
            if output.use.folder:
                try:
                    make_private_dirs(output.real)
                except OSError as exc:
                    where = shown(output.real)
                    msg = (
                        f"{owner}: {output.use.label}: cannot create {where}: {exc.strerror or exc}"
                    )
                    raise ConfigError(msg) from None
            taken.append(acquire(path, field=output.use.label, guarded=output.real, owner=owner))
    except BaseException:
        Locks(taken).release()
        raise
    return Locks(taken)
