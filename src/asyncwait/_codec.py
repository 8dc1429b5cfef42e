"""JSON for sources, sinks, the errors file and the HTTP/Redis lookups (private).

orjson when it is installed (the ``cli`` and ``all`` extras), the standard library when it
is not, and the same bytes either way: the standard library's compact form
(``{"a":1,"b":"é"}``: no spaces, UTF-8, ``NaN``/``Infinity`` refused) is the reference, and
orjson's answer is used only where it is known to be identical::

    dumps(value) ─► orjson ──► holds "null", "e-" or "0.0000"? ──no──► done
                      │ TypeError (a type orjson writes    │ yes: maybe a NaN orjson wrote as
                      │ differently, an int past 64 bits)  │ null, or a small float it wrote
                      └──────► the standard library ◄──────┘ otherwise (1e-9 for 1e-09)
                               (raises what it raises)

    loads(data)  ─► a run of 19+ digits? (orjson reads ints past 64 bits as floats)
                      │ no ─► orjson ─► done          (invalid JSON for orjson: fall through)
                      └ yes ───────────► the standard library (raises ValueError)

Both checks are substring searches; :func:`dumps_lines` makes them once per batch of
records, and a source once per chunk of lines (:func:`long_digits`), so the common case
pays only orjson.

Values neither codec writes as JSON text by itself follow orjson: a ``uuid.UUID`` is its
string, an ``enum.Enum`` member its value. ``ASYNCWAIT_JSON=stdlib`` in the environment turns
orjson off (the tests run both).
"""

from __future__ import annotations

import bisect
import enum
import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Final

__all__ = (
    "FAST",
    "UNPARSED",
    "dumps",
    "dumps_lines",
    "dumps_stdlib",
    "loads",
    "loads_fast",
    "loads_trusted",
    "long_digits",
    "not_json",
)

try:
    import orjson
except ImportError:  # pragma: no cover - the test environment has orjson; see test_codec
    orjson = None  # type: ignore[assignment]

FAST: Final = orjson is not None and os.environ.get("ASYNCWAIT_JSON", "").lower() != "stdlib"
"""Whether orjson is used (installed, and not turned off with ``ASYNCWAIT_JSON=stdlib``)."""

UNPARSED: Final = object()
"""Returned by :func:`loads_fast` when the standard library must decide."""

_DIGIT_RUN: Final = b"0" * 19  # orjson reads an int of 19+ digits past 64 bits as a float
_DIGITS_ONLY: Final = bytes.maketrans(
    bytes(range(256)), bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
)
# What orjson may have written otherwise than the standard library: a NaN or Infinity as
# null, a float below 1e-4 as 0.0000... or with a one-digit exponent (1e-9 for 1e-09).
_SUSPECTS: Final = (b"null", b"0.0000", b"e-")


def not_json(value: object) -> Any:
    """The standard library encoder's ``default``: what orjson writes natively, else refuse."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    msg = f"Object of type {type(value).__name__} is not JSON serializable"
    raise TypeError(msg)


def _stdlib_encoder() -> Callable[[Any, int], Iterable[str]]:
    """The C encoder, built once (``json.dumps`` rebuilds it for every value).

    Compact, UTF-8, ``allow_nan=False``: NaN and Infinity are not JSON and other readers
    would choke on them. Circular values end in RecursionError instead of being tracked.
    """
    if c_make_encoder is not None:
        encode: Callable[[Any, int], Iterable[str]] = c_make_encoder(
            None, not_json, encode_basestring, None, ":", ",", False, False, False
        )
        return encode
    encoder = json.JSONEncoder(  # pragma: no cover - CPython always has the C encoder
        ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=not_json
    )
    return lambda value, _level: (encoder.encode(value),)  # pragma: no cover - as above


_ENCODE: Final = _stdlib_encoder()
if orjson is not None:
    _OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    _LINE_OPTIONS: Final = _OPTIONS | orjson.OPT_APPEND_NEWLINE


def _refuse(value: object) -> Any:
    # orjson's default: anything it does not write itself goes to the standard library.
    raise TypeError


def _suspect(data: bytes) -> bool:
    return any(pattern in data for pattern in _SUSPECTS)


def dumps_stdlib(value: Any) -> bytes:
    """:func:`dumps` by the standard library alone: the reference the fast path matches."""
    return "".join(_ENCODE(value, 0)).encode()


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON in UTF-8.

    Raises:
        TypeError: a value JSON cannot represent (a ``datetime``, a ``set``, ...).
        ValueError: NaN or Infinity, or a value that contains itself.
        RecursionError: a value nested too deeply.

    >>> dumps({"a": 1, "b": [None, "é"]}).decode()
    '{"a":1,"b":[null,"é"]}'
    """
    if FAST:
        try:
            out: bytes = orjson.dumps(value, default=_refuse, option=_OPTIONS)
        except TypeError:
            pass
        else:
            if not _suspect(out):
                return out
    return dumps_stdlib(value)


def dumps_lines(values: Sequence[Any]) -> tuple[bytes, list[tuple[int, Exception]]]:
    r"""Each of ``values`` as one line of JSON (``\n`` at the end), all joined.

    Returns the bytes, and the values that cannot be written (by index, with the error
    :func:`dumps` raises), which are left out.

    >>> out, failed = dumps_lines([{"a": 1}, float("nan"), None])
    >>> out, [index for index, _ in failed]
    (b'{"a":1}\nnull\n', [1])
    """
    failed: list[tuple[int, Exception]] = []
    if not FAST:
        return b"".join(_lines_stdlib(values, range(len(values)), failed)), failed
    encode = orjson.dumps
    refuse, options = _refuse, _LINE_OPTIONS
    parts: list[bytes] = []
    append = parts.append
    retry: list[int] = []
    for value in values:
        try:
            append(encode(value, default=refuse, option=options))
        except TypeError:
            retry.append(len(parts))
            append(b"")
    out = b"".join(parts)
    for pattern in _SUSPECTS:
        at = out.find(pattern)
        if at >= 0:
            retry += _parts_at(parts, out, pattern, at)
    if not retry:
        return out, failed
    indexes = sorted(set(retry))
    for index, line in zip(indexes, _lines_stdlib(values, indexes, failed), strict=True):
        parts[index] = line
    return b"".join(parts), failed


def _parts_at(parts: list[bytes], out: bytes, pattern: bytes, first: int) -> list[int]:
    """The indexes of the ``parts`` (joined: ``out``) holding ``pattern``, first at ``first``."""
    ends = list(itertools.accumulate(map(len, parts)))
    found: list[int] = []
    at = first
    while at >= 0:
        index = bisect.bisect_right(ends, at)
        found.append(index)
        at = out.find(pattern, ends[index])  # the next part's start
    return found


def _lines_stdlib(
    values: Sequence[Any], indexes: Iterable[int], failed: list[tuple[int, Exception]]
) -> list[bytes]:
    """The standard library's lines for ``values[i]`` (``b""`` for a value it refuses)."""
    lines: list[bytes] = []
    for index in indexes:
        try:
            lines.append(dumps_stdlib(values[index]) + b"\n")
        except (TypeError, ValueError, RecursionError) as exc:
            failed.append((index, exc))
            lines.append(b"")
    return lines


def long_digits(data: bytes) -> bool:
    """Whether ``data`` holds a run of 19 or more digits (orjson could misread it).

    A source checks a whole chunk of lines at once, then parses its lines with
    :func:`loads_trusted`.
    """
    return _DIGIT_RUN in data.translate(_DIGITS_ONLY)


def _no_orjson(data: bytes) -> Any:  # pragma: no cover - only without orjson
    msg = "orjson is not installed"
    raise ValueError(msg)


loads_trusted: Final[Callable[[bytes], Any]] = _no_orjson if orjson is None else orjson.loads
"""orjson's ``loads`` itself (no wrapper on a source's per-line path), for bytes known to
hold no :func:`long_digits` run; raises ``ValueError`` for what orjson cannot parse."""


def loads_fast(data: bytes) -> Any:
    """``data`` parsed by orjson, or :data:`UNPARSED` when the standard library must decide.

    For a caller with its own standard-library path (and its own error messages).
    """
    if FAST and not long_digits(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return UNPARSED


def loads(data: bytes | str) -> Any:
    """``data`` parsed as JSON.

    Raises:
        ValueError: it is not valid JSON (``json.JSONDecodeError``), or not UTF-8.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    value = loads_fast(raw)
    if value is UNPARSED:
        return json.loads(data)
    return value
