"""Line sources: an input's bytes split into numbered lines with their offsets (private)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

from .._codec import long_digits
from .._paths import PathUse
from .._rejects import Reject
from ..errors import BadInputError, CheckpointWarning, ConfigError
from ._base import Source, reject_nothing
from ._inputs import Input, StdinInput

__all__ = ("LineSource",)


class LineSource(Source):
    """Splits an input's bytes into lines, tracking each line's number and end offset."""

    yields_lines = True
    # True: check each chunk for long digit runs, which orjson would misread (JSONL).
    _guard_digits: ClassVar[bool] = False

    def __init__(self, name: str, input_: Input) -> None:
        super().__init__(name)
        self._input = input_
        self._encoding = "utf-8"
        # The current lines may be parsed by orjson (see _codec): none holds a long digit run.
        self.trusted = False
        self._reject: Reject = reject_nothing
        self._reset()

    def _reset(self) -> None:
        self._lines: list[bytes] = []  # complete lines of the current chunk
        self._next = 0  # index of the next line of _lines to take
        self._newline = 1  # bytes after each line of _lines: 0 for a last line without "\n"
        self._tail = b""  # an incomplete line at the end of the last chunk
        self._eof = False

    async def open(self, reject: Reject, *, start_offset: int = 0, start_line: int = 1) -> None:
        if not isinstance(start_offset, int) or start_offset < 0:
            msg = f"{self.name}: start_offset must be an int >= 0, got {start_offset!r}"
            raise ConfigError(msg)
        if not isinstance(start_line, int) or start_line < 1:
            msg = f"{self.name}: start_line must be an int >= 1, got {start_line!r}"
            raise ConfigError(msg)
        self._reject = reject
        self._reset()
        self.offset = 0
        self.line = 0
        await self._input.open()
        try:
            await self._prepare(start_offset, start_line)
        except BaseException:
            await self._input.close()
            raise

    async def _prepare(self, start_offset: int, start_line: int) -> None:
        self._seek(start_offset, start_line)

    @property
    def replayable(self) -> bool:
        return not isinstance(self._input, StdinInput)

    def _resume_point(self) -> tuple[int, int]:
        """The offset and line a resumed run starts after: a row boundary."""
        return self.offset, self.line

    def position(self) -> dict[str, Any]:
        offset, line = self._resume_point()
        return {"offset": offset, "line": line, "input": self._input.fingerprint(offset)}

    def check_position(self, saved: Mapping[str, Any]) -> None:
        offset = saved["offset"]
        fingerprint = saved.get("input")
        if fingerprint is None:
            if offset:
                warnings.warn(
                    f"{self.name}: the checkpoint cannot tell whether this is the input it "
                    f"read (it has no fingerprint of it); resuming from byte {offset:,}",
                    CheckpointWarning,
                    stacklevel=2,
                )
            return
        self._input.check(offset, fingerprint)

    def _seek(self, offset: int, line: int) -> None:
        if offset:
            self._input.seek(offset)
            self._reset()
        self.offset = offset
        self.line = line - 1

    async def close(self) -> None:
        await self._input.close()

    def paths(self) -> tuple[PathUse, ...]:
        return self._input.paths()

    async def _fill(self) -> bool:
        """Make the next lines available; False at the end of the input."""
        while not self._eof:
            chunk = await self._input.read()
            if not chunk:
                self._eof = True
                if self._tail:
                    self._lines, self._next, self._newline = [self._tail], 0, 0
                    if self._guard_digits:
                        self.trusted = not long_digits(self._tail)
                    self._tail = b""
                    return True
                return False
            lines = chunk.split(b"\n")
            if self._tail:
                lines[0] = self._tail + lines[0]
            if self._guard_digits:
                # One check for the whole chunk (and the line it continues), not one per line.
                self.trusted = not long_digits(chunk) and not (self._tail and long_digits(lines[0]))
            self._tail = lines.pop()
            if lines:
                self._lines, self._next, self._newline = lines, 0, 1
                return True
        return False

    def _bad(self, raw: bytes, line: int, reason: str) -> None:
        text = raw.decode(self._encoding, errors="replace").rstrip("\r")
        self._reject(BadInputError(reason, source=self.name, line=line, raw=text))
