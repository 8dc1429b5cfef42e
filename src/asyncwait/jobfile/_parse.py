"""Reading a job file: TOML in, a validated :class:`JobSpec` out, or a precise ConfigError."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn, cast, final

from .._paths import shown
from ..errors import ConfigError
from ..operator import OutputMode
from ._dsn import dsn_problem
from ._spec import (
    EPOCH_FORMATS,
    CacheSpec,
    CheckpointSpec,
    ErrorsSpec,
    JobSpec,
    LookupSpec,
    RetrySpec,
    SinkSpec,
    SourceSpec,
    WatermarkSpec,
)

__all__ = ("load", "parse")

_SOURCE_TYPES: Final = ("jsonl", "csv", "stdin")
_SINK_TYPES: Final = ("jsonl", "csv", "stdout")
_LOOKUP_TYPES: Final = ("sqlite", "postgres", "mysql", "redis", "http")
_JOINS: Final = ("left", "inner")
_MODES: Final = tuple(m.value for m in OutputMode)

# Fields every lookup accepts, then those of each type (True: required).
_LOOKUP_COMMON: Final = (
    "type", "on", "columns", "how", "mode", "capacity", "timeout", "cache",
    "max_batch_size", "max_batch_wait", "max_queries", "min_match_ratio",
)  # fmt: skip
_LOOKUP_FIELDS: Final[dict[str, dict[str, bool]]] = {
    "sqlite": {"path": True, "table": True, "key": True},
    "postgres": {"dsn": True, "table": True, "key": True, "schema": False, "pool_size": False},
    "mysql": {"dsn": True, "table": True, "key": True, "pool_size": False},
    "redis": {"url": True, "key_prefix": False, "value": False, "pool_size": False},
    "http": {"url": True, "method": False},
}
# A key TOML writes without quotes; others are shown quoted, as in the file ("", "a b").
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
# The largest pool_size each factory accepts (lookups.postgres: 1..100); absent: no bound.
_MAX_POOL_SIZE: Final[dict[str, int]] = {"postgres": 100}


def _kind(value: object) -> str:
    """Name the TOML type of ``value`` for messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


@final
class _Table:
    """One TOML table under validation: typed getters that raise ConfigError with its path."""

    __slots__ = ("data", "file", "name")

    def __init__(self, data: object, name: str, file: Path, allowed: tuple[str, ...]) -> None:
        self.file = file
        self.name = name  # dotted path of this table, "" for the top level
        if not isinstance(data, dict):
            self.fail(name, f"expected a table, got {_kind(data)} {data!r}")
        self.data: dict[str, Any] = data
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(self.field(key), f"unknown key; {hint}(allowed: {', '.join(allowed)})")

    def field(self, key: str) -> str:
        shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
        return f"{self.name}.{shown}" if self.name else shown

    def fail(self, field: str, problem: str) -> NoReturn:
        msg = f"{self.file}: {field}: {problem}"
        raise ConfigError(msg)

    def has(self, key: str) -> bool:
        return key in self.data

    def required(self, key: str) -> Any:
        if key not in self.data:
            self.fail(self.field(key), "missing required field")
        return self.data[key]

    def text(
        self,
        key: str,
        *,
        required: bool = False,
        choices: tuple[str, ...] = (),
        allow_empty: bool = False,
    ) -> Any:
        if not required and key not in self.data:
            return None
        value = self.required(key)
        if not isinstance(value, str):
            self.fail(self.field(key), f"expected a string, got {_kind(value)} {value!r}")
        if choices and value not in choices:
            self.fail(self.field(key), f"{value!r} is not one of {', '.join(choices)}")
        if not value and not allow_empty:
            self.fail(self.field(key), "must not be empty")
        return value

    def integer(
        self, key: str, *, minimum: int, maximum: int | None = None, required: bool = False
    ) -> Any:
        if not required and key not in self.data:
            return None
        value = self.required(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(self.field(key), f"expected an integer, got {_kind(value)} {value!r}")
        if maximum is not None and not minimum <= value <= maximum:
            self.fail(self.field(key), f"must be within [{minimum}, {maximum}], got {value}")
        if value < minimum:
            self.fail(self.field(key), f"must be >= {minimum}, got {value}")
        return value

    def number(
        self, key: str, *, minimum: float = 0.0, positive: bool = False, required: bool = False
    ) -> Any:
        if not required and key not in self.data:
            return None
        value = self.required(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(self.field(key), f"expected a number, got {_kind(value)} {value!r}")
        if not math.isfinite(value):
            self.fail(self.field(key), f"must be a finite number, got {value}")
        if positive and not value > 0:
            self.fail(self.field(key), f"must be > 0, got {value}")
        if value < minimum:
            self.fail(self.field(key), f"must be >= {minimum:g}, got {value}")
        return float(value)

    def str_list(self, key: str) -> tuple[str, ...] | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(self.field(key), f"expected an array of non-empty strings, got {value!r}")
        if not value:
            self.fail(self.field(key), "must not be empty (leave it out for all columns)")
        return tuple(value)

    def path(self, key: str, *, required: bool = False, must_exist: bool = False) -> Any:
        text = self.text(key, required=required)
        if text is None:
            return None
        path = self.location(key, text)
        try:
            if must_exist and not path.is_file():
                self.fail(self.field(key), f"no such file: {shown(path)}")
            if not must_exist and not path.parent.is_dir():
                self.fail(self.field(key), f"directory does not exist: {shown(path.parent)}")
        except OSError as exc:  # e.g. a name too long for the file system
            self.fail(self.field(key), f"not a usable path: {exc.strerror or exc}")
        return path

    def location(self, key: str, text: str) -> Path:
        """``text`` as an absolute path (``~`` expanded; relative to the job file's folder)."""
        if "\x00" in text:
            self.fail(self.field(key), "not a usable path: it contains a NUL character")
        # os.path.expanduser leaves "~unknown-user" as it is; Path.expanduser raises.
        path = Path(os.path.expanduser(text))
        if not path.is_absolute():
            path = self.file.parent.absolute() / path
        return path

    def table(self, key: str, allowed: tuple[str, ...]) -> _Table | None:
        if key not in self.data:
            return None
        return _Table(self.data[key], self.field(key), self.file, allowed)


def load(path: str | Path) -> JobSpec:
    """Read and validate the job file at ``path``.

    Args:
        path: the TOML job file; relative paths inside it resolve against its directory.

    Returns:
        The validated job.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or a field is wrong; the message
            names the file and the field.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = (exc.strerror if isinstance(exc, OSError) else None) or exc
        msg = f"{file}: cannot read job file: {reason}"
        raise ConfigError(msg) from exc
    return parse(text, file=file)


def parse(text: str, *, file: str | Path = "job.toml") -> JobSpec:
    r"""Validate the job file ``text``; ``file`` names it in messages and anchors its paths.

    Raises:
        ConfigError: the text is not TOML or a field is wrong.

    >>> spec = parse('[source]\ntype = "stdin"\n[sink]\ntype = "stdout"\n', file="j.toml")
    >>> spec.name, spec.source.type, spec.lookups
    ('j', 'stdin', ())
    """
    file = Path(file)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{file}: not a valid TOML file: {exc}"
        raise ConfigError(msg) from exc
    top = _Table(data, "", file, ("job", "source", "lookup", "sink", "checkpoint", "errors"))
    job = top.table("job", ("name",))
    name = (job.text("name") if job else None) or file.stem
    lookups = top.data.get("lookup", [])
    if not isinstance(lookups, list):
        top.fail("lookup", f"expected an array of tables ([[lookup]]), got {_kind(lookups)}")
    source = _source(top)
    checkpoint = _checkpoint(top)
    if checkpoint is not None and source.type == "stdin":
        # A checkpoint saves the source's position, and standard input cannot go back.
        top.fail("checkpoint", "needs a source that can be read again; source.type is 'stdin'")
    return JobSpec(
        file=file,
        name=name,
        source=source,
        lookups=tuple(_lookup(top, item, i) for i, item in enumerate(lookups)),
        sink=_sink(top),
        checkpoint=checkpoint,
        errors=_errors(top),
    )


def _source(top: _Table) -> SourceSpec:
    top.required("source")
    src = cast("_Table", top.table("source", ("type", "path", "watermarks")))
    type_ = src.text("type", required=True, choices=_SOURCE_TYPES)
    if type_ == "stdin":
        if src.has("path"):
            src.fail(src.field("path"), "not used by source type 'stdin'")
        path = None
    else:
        path = src.path("path", required=True, must_exist=True)
    wm = src.table("watermarks", ("timestamp_field", "timestamp_format", "max_out_of_orderness_ms"))
    watermarks = None
    if wm is not None:
        fmt = wm.text("timestamp_format") or "epoch_ms"
        if fmt not in EPOCH_FORMATS and not _format_round_trips(fmt):
            wm.fail(
                wm.field("timestamp_format"),
                f"{fmt!r} is not a strptime format that can parse its own output "
                f"(or one of {', '.join(EPOCH_FORMATS)})",
            )
        watermarks = WatermarkSpec(
            timestamp_field=wm.text("timestamp_field", required=True),
            timestamp_format=fmt,
            max_out_of_orderness_ms=wm.integer("max_out_of_orderness_ms", minimum=0) or 0,
        )
    return SourceSpec(type=type_, path=path, watermarks=watermarks)


def _format_round_trips(fmt: str) -> bool:
    """Whether ``strptime`` parses what ``strftime`` writes with ``fmt`` (a sanity check)."""
    if "%" not in fmt:
        return False
    sample = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    try:
        datetime.strptime(sample.strftime(fmt), fmt)  # noqa: DTZ007 - only checks parsing
    except ValueError:
        return False
    return True


def _lookup(top: _Table, data: object, index: int) -> LookupSpec:
    name = f"lookup[{index}]"
    if not isinstance(data, dict):
        top.fail(name, f"expected a table, got {_kind(data)} {data!r}")
    peek = cast("dict[str, Any]", data)
    pre = _Table({"type": peek.get("type")} if "type" in peek else {}, name, top.file, ("type",))
    type_ = pre.text("type", required=True, choices=_LOOKUP_TYPES)
    specific = _LOOKUP_FIELDS[type_]
    all_fields = {k for fields in _LOOKUP_FIELDS.values() for k in fields}
    for key in peek:
        if key in all_fields and key not in specific:
            pre.fail(
                pre.field(key),
                f"not used by lookup type {type_!r} (it takes {', '.join(specific)})",
            )
    lk = _Table(data, name, top.file, (*_LOOKUP_COMMON, "retry", *specific))
    values: dict[str, Any] = {}
    for key, required in specific.items():
        if key == "path":
            values[key] = lk.path(key, required=required, must_exist=True)
        elif key == "pool_size":
            values[key] = lk.integer(key, minimum=1, maximum=_MAX_POOL_SIZE.get(type_))
        else:
            values[key] = lk.text(key, required=required, allow_empty=key == "key_prefix")
    for key in ("dsn", "url"):
        problem = dsn_problem(type_, values[key]) if values.get(key) else None
        if problem is not None:
            lk.fail(lk.field(key), problem)
    if values.get("schema") is not None and "\x00" in values["schema"]:
        lk.fail(lk.field("schema"), "must not contain a NUL character")
    if type_ == "redis" and values["value"] is not None:
        lk.text("value", choices=("hash", "json"))
    if type_ == "http":
        if "{key}" not in values["url"]:
            lk.fail(lk.field("url"), "the URL template must contain '{key}'")
        lk.text("method", choices=("GET", "POST"))
    mode = lk.text("mode", choices=_MODES)
    capacity = lk.integer("capacity", minimum=1)
    ratio = lk.number("min_match_ratio")
    if ratio is not None and ratio > 1:
        lk.fail(lk.field("min_match_ratio"), f"must be within [0, 1], got {ratio:g}")
    return LookupSpec(
        type=type_,
        on=lk.text("on", required=True),
        columns=lk.str_list("columns"),
        how=lk.text("how", choices=_JOINS) or "left",
        mode=OutputMode(mode) if mode else OutputMode.UNORDERED,
        capacity=100 if capacity is None else capacity,
        timeout=lk.number("timeout", positive=True),
        cache=_cache(lk),
        retry=_retry(lk),
        max_batch_size=lk.integer("max_batch_size", minimum=1),
        max_batch_wait=lk.number("max_batch_wait", minimum=0.0) or 0.0,
        max_queries=lk.integer("max_queries", minimum=1),
        min_match_ratio=ratio,
        **values,
    )


def _cache(lk: _Table) -> CacheSpec | None:
    raw = lk.data.get("cache")
    if raw is None:
        return None
    kind = _Table(raw, lk.field("cache"), lk.file, tuple(raw) if isinstance(raw, dict) else ())
    type_ = kind.text("type", required=True, choices=("lru", "full"))
    if type_ == "lru":
        c = cast("_Table", lk.table("cache", ("type", "max_size", "ttl", "miss_ttl")))
        return CacheSpec(
            type="lru",
            max_size=c.integer("max_size", minimum=1, required=True),
            ttl=c.number("ttl", positive=True),
            miss_ttl=c.number("miss_ttl", minimum=0.0),
        )
    c = cast("_Table", lk.table("cache", ("type", "reload_interval")))
    # Without reload_interval the table is loaded once, when the job starts.
    return CacheSpec(type="full", reload_interval=c.number("reload_interval", positive=True))


def _retry(lk: _Table) -> RetrySpec | None:
    raw = lk.data.get("retry")
    if raw is None:
        return None
    kind = _Table(raw, lk.field("retry"), lk.file, tuple(raw) if isinstance(raw, dict) else ())
    type_ = kind.text("type", required=True, choices=("exponential", "fixed"))
    if type_ == "fixed":
        r = cast("_Table", lk.table("retry", ("type", "max_retries", "delay")))
        spec = RetrySpec(
            type="fixed",
            max_retries=r.integer("max_retries", minimum=0, required=True),
            delay=r.number("delay", required=True),
        )
    else:
        fields = ("type", "max_retries", "initial_delay", "max_delay", "multiplier", "jitter")
        r = cast("_Table", lk.table("retry", fields))
        multiplier = r.number("multiplier", minimum=1.0)
        jitter = r.number("jitter")
        if jitter is not None and jitter > 1:
            r.fail(r.field("jitter"), f"must be within [0, 1], got {jitter}")
        spec = RetrySpec(
            type="exponential",
            max_retries=r.integer("max_retries", minimum=0, required=True),
            initial_delay=r.number("initial_delay", required=True),
            max_delay=r.number("max_delay", required=True),
            multiplier=2.0 if multiplier is None else multiplier,
            jitter=jitter or 0.0,
        )
    try:
        spec.strategy  # noqa: B018 - cross-field checks (max_delay >= initial_delay)
    except ValueError as exc:
        r.fail(r.name, str(exc))
    return spec


def _sink(top: _Table) -> SinkSpec:
    top.required("sink")
    sink = cast("_Table", top.table("sink", ("type", "path")))
    type_ = sink.text("type", required=True, choices=_SINK_TYPES)
    if type_ == "stdout":
        if sink.has("path"):
            sink.fail(sink.field("path"), "not used by sink type 'stdout'")
        return SinkSpec(type="stdout")
    return SinkSpec(type=type_, path=sink.path("path", required=True))


def _checkpoint(top: _Table) -> CheckpointSpec | None:
    cp = top.table("checkpoint", ("interval", "dir"))
    if cp is None:
        return None
    interval = cp.number("interval", positive=True, required=True)
    directory = cp.location("dir", cp.text("dir") or ".asyncwait/checkpoints")
    return CheckpointSpec(interval=interval, dir=directory)


def _errors(top: _Table) -> ErrorsSpec | None:
    er = top.table("errors", ("path", "max_errors"))
    if er is None:
        return None
    return ErrorsSpec(path=er.path("path"), max_errors=er.integer("max_errors", minimum=0))
