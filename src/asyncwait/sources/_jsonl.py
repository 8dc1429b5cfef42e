"""The JSONL source: one JSON object per line (private)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final, final

from .._codec import FAST, loads_trusted
from ..elements import StreamElement
from ._base import Source, SourcedRecord
from ._inputs import FileInput, Input
from ._lines import LineSource

__all__ = ("jsonl", "jsonl_source")


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8: {exc.reason} at byte {exc.start}"
    return f"invalid JSON: {exc}"  # pragma: no cover - json.loads raises only the two above


_UNPARSED: Final = object()
_JSON_TYPES: Final = {list: "an array", str: "a string", int: "a number", float: "a number"}


_SCAN: Final = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # C scanner, no wrappers


def _loads_slowly(text: str, line: int) -> Any:
    """Parse a line the fast path refused: surrounding whitespace, a BOM, or an error."""
    if line == 1:
        text = text.removeprefix("\ufeff")
    return json.loads(text)


@final
class _JsonlSource(LineSource):
    """One JSON object per line; blank lines are skipped."""

    _guard_digits = FAST

    async def read(self, max_elements: int) -> list[StreamElement] | None:
        out: list[StreamElement] = []
        append = out.append
        scan = _SCAN
        fast = loads_trusted
        make = SourcedRecord
        budget = max_elements  # lines, good or bad: a run of bad lines still returns
        while budget > 0:
            lines, i = self._lines, self._next
            if i >= len(lines):
                # Return what there is rather than wait on a live input (a pipe) for more.
                if out or not await self._fill():
                    break
                continue
            stop = min(len(lines), i + budget)
            budget -= stop - i
            line, offset, newline = self.line, self.offset, self._newline
            trusted = self.trusted
            for raw in lines[i:stop]:
                line += 1
                offset += len(raw) + newline
                value = _UNPARSED
                if trusted:
                    # Not contextlib.suppress: a context manager per line costs more.
                    try:  # noqa: SIM105
                        value = fast(raw)
                    except ValueError:
                        pass  # not JSON for orjson: the standard library says why
                if value is _UNPARSED:
                    # The standard library decides (and explains what is wrong).
                    try:
                        text = raw.decode()
                        try:
                            value, end = scan(text, 0)
                        except StopIteration:
                            value = _loads_slowly(text, line)
                        else:
                            if end != len(text):
                                value = _loads_slowly(text, line)
                    except ValueError as exc:
                        if raw.strip():
                            self.line, self.offset = line, offset
                            self._bad(raw, line, _json_reason(exc))
                        continue
                if type(value) is not dict:
                    self.line, self.offset = line, offset
                    kind = _JSON_TYPES.get(type(value), "null" if value is None else "a bool")
                    self._bad(raw, line, f"expected a JSON object, got {kind}")
                    continue
                append(make(value, None, line))
            self.line, self.offset, self._next = line, offset, stop
        if not out and self._eof and self._next >= len(self._lines):
            return None
        return out


def jsonl(path: str | os.PathLike[str]) -> Source:
    """A source reading one JSON object per line from the file at ``path``.

    Records come in file order, one per line, each with its line number; blank lines are
    skipped. A line that is not valid JSON, or whose value is not an object, is bad input
    (the errors file gets its line and raw text). Opening a missing file raises
    :class:`~asyncwait.ConfigError` naming the path.

    >>> jsonl("events.jsonl").name
    'events.jsonl'
    """
    path = Path(path)
    return _JsonlSource(str(path), FileInput(path, "jsonl source"))


def jsonl_source(name: str, input_: Input) -> Source:
    """A JSONL source named ``name`` reading ``input_`` (for :func:`jsonl` and ``stdin``)."""
    return _JsonlSource(name, input_)
