"""Where line sources get their bytes: a file, or standard input (private to sources).

Files are read with plain blocking reads of 1 MiB chunks: reads of a local file are short,
and a thread hop per chunk would cost more than it saves. Standard input that is a pipe or a
terminal is read through the event loop, never blocking it.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Any, Final, final

from .._paths import Access, PathUse
from ..errors import ConfigError
from ._fingerprint import fingerprint, mismatch

CHUNK: Final = 1 << 20  # bytes per read


class Input(ABC):
    """Where a line source gets its bytes from."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def read(self) -> bytes:
        """The next chunk; empty at the end."""

    @abstractmethod
    def seek(self, offset: int) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    def paths(self) -> tuple[PathUse, ...]:
        """The files this input reads (none: standard input)."""
        return ()

    def fingerprint(self, offset: int) -> dict[str, Any] | None:
        """What identifies the bytes read up to ``offset`` (``None``: nothing can)."""
        return None

    def check(self, offset: int, saved: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Refuse to resume at ``offset`` when the input is not the one ``saved`` describes."""


def _open_binary(file: Path | int) -> IO[bytes]:
    """Open ``file`` for unbuffered binary reads (opening a local file does not block long)."""
    return open(file, "rb", buffering=0)


@final
class FileInput(Input):
    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self._what = what
        self._file: IO[bytes] | None = None
        self._expected: tuple[int, int] | None = None  # (device, inode) check() accepted
        self._last: tuple[int, dict[str, Any]] | None = None  # the last fingerprint taken

    def _cannot_open(self, exc: OSError) -> ConfigError:
        if isinstance(exc, FileNotFoundError):
            msg = f"{self._what}: no such file: {str(self.path)!r}"
        elif isinstance(exc, IsADirectoryError):
            msg = f"{self._what}: cannot open {str(self.path)!r}: it is a folder, not a file"
        else:
            msg = f"{self._what}: cannot open {str(self.path)!r}: {exc.strerror or exc}"
        return ConfigError(msg)

    async def open(self) -> None:
        try:
            self._file = file = _open_binary(self.path)
        except OSError as exc:
            raise self._cannot_open(exc) from exc
        expected = self._expected
        if expected is not None:
            # Replaced between check() and now: refuse as check() would have.
            status = os.fstat(file.fileno())
            if (status.st_dev, status.st_ino) != expected:
                file.close()
                self._file = None
                reason = "it was replaced while the job opened it"
                raise self._changed(reason, 0)

    def _changed(self, reason: str, offset: int) -> ConfigError:
        msg = (
            f"{self._what}: {str(self.path)!r} is not the input the checkpoint read: {reason}; "
            f"resuming would go on from byte {offset:,} of another input. Put the original "
            "file back, or start over with --fresh (StreamEnvironment(..., fresh=True))."
        )
        return ConfigError(msg)

    def fingerprint(self, offset: int) -> dict[str, Any] | None:
        last = self._last
        if last is not None and last[0] == offset:
            return last[1]  # a source that ended is asked again at every checkpoint
        file = self._file
        if file is None or not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return None  # a named pipe, a device: nothing to read again
        taken = fingerprint(file.fileno(), offset)
        self._last = (offset, taken)
        return taken

    def check(self, offset: int, saved: dict[str, Any]) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # open() says so, as for any missing input
        except OSError as exc:
            raise self._cannot_open(exc) from exc
        try:
            reason = mismatch(fd, offset, saved)
        finally:
            os.close(fd)
        if reason is not None:
            raise self._changed(reason, offset)
        self._expected = (saved["device"], saved["inode"])

    async def read(self) -> bytes:
        assert self._file is not None  # open() ran
        return self._file.read(CHUNK)

    def seek(self, offset: int) -> None:
        assert self._file is not None  # open() ran
        self._file.seek(offset)

    async def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def paths(self) -> tuple[PathUse, ...]:
        return (PathUse(f"{self._what} {str(self.path)!r}", self.path, Access.READ),)


@final
class StdinInput(Input):
    """Standard input: a regular file is read like one; a pipe or terminal without blocking."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._fd = -1
        self._was_blocking = True

    async def open(self) -> None:
        stream = sys.stdin
        if stream is None:
            msg = "stdin source: this process has no standard input"
            raise ConfigError(msg)
        self._fd = fd = stream.fileno()
        # A duplicate, so that closing the source never closes the process's stdin.
        dup = os.dup(fd)
        if stat.S_ISREG(os.fstat(dup).st_mode):
            self._file = _open_binary(dup)
            return
        self._was_blocking = os.get_blocking(fd)
        pipe = _open_binary(dup)  # the transport closes it
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 * CHUNK, loop=loop)
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe
            )
        except BaseException:
            pipe.close()
            raise
        self._reader = reader
        self._transport = transport

    async def read(self) -> bytes:
        if self._file is not None:
            return self._file.read(CHUNK)
        assert self._reader is not None  # open() ran
        return await self._reader.read(CHUNK)

    def seek(self, offset: int) -> None:
        msg = f"stdin source: standard input cannot be resumed from offset {offset}"
        raise ConfigError(msg)

    async def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
            if self._was_blocking:
                # The duplicate shared stdin's non-blocking flag; give stdin back as it was.
                os.set_blocking(self._fd, True)
