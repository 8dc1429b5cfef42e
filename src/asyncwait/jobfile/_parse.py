"""Reading a job file: TOML in, a validated :class:`JobSpec` out, or a precise ConfigError."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast

from ..errors import ConfigError
from ..operator import OutputMode
from ._dsn import dsn_problem
from ._resilience import RESILIENCE_FIELDS, read_resilience
from ._spec import (
    EPOCH_FORMATS,
    CacheSpec,
    CheckpointSpec,
    ErrorsSpec,
    JobSpec,
    LookupSpec,
    MetricsSpec,
    RetrySpec,
    SinkSpec,
    SourceSpec,
    WatermarkSpec,
)
from ._table import Table, kind_of

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
# The largest pool_size each factory accepts (lookups.postgres: 1..100); absent: no bound.
_MAX_POOL_SIZE: Final[dict[str, int]] = {"postgres": 100}


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
    top = Table(
        data,
        "",
        file,
        ("job", "source", "lookup", "sink", "checkpoint", "errors", "metrics"),
    )
    job = top.table("job", ("name",))
    name = (job.text("name") if job else None) or file.stem
    lookups = top.data.get("lookup", [])
    if not isinstance(lookups, list):
        top.fail("lookup", f"expected an array of tables ([[lookup]]), got {kind_of(lookups)}")
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
        metrics=_metrics(top),
    )


def _source(top: Table) -> SourceSpec:
    top.required("source")
    src = cast("Table", top.table("source", ("type", "path", "watermarks")))
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


def _lookup(top: Table, data: object, index: int) -> LookupSpec:
    name = f"lookup[{index}]"
    if not isinstance(data, dict):
        top.fail(name, f"expected a table, got {kind_of(data)} {data!r}")
    peek = cast("dict[str, Any]", data)
    pre = Table({"type": peek.get("type")} if "type" in peek else {}, name, top.file, ("type",))
    type_ = pre.text("type", required=True, choices=_LOOKUP_TYPES)
    specific = _LOOKUP_FIELDS[type_]
    all_fields = {k for fields in _LOOKUP_FIELDS.values() for k in fields}
    for key in peek:
        if key in all_fields and key not in specific:
            pre.fail(
                pre.field(key),
                f"not used by lookup type {type_!r} (it takes {', '.join(specific)})",
            )
    lk = Table(data, name, top.file, (*_LOOKUP_COMMON, *RESILIENCE_FIELDS, "retry", *specific))
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
    capacity = 100 if capacity is None else capacity
    timeout = lk.number("timeout", positive=True)
    cache = _cache(lk)
    retry = _retry(lk)
    resilience = read_resilience(lk, capacity=capacity, timeout=timeout, retry=retry, cache=cache)
    return LookupSpec(
        type=type_,
        on=lk.text("on", required=True),
        columns=lk.str_list("columns"),
        how=lk.text("how", choices=_JOINS) or "left",
        mode=OutputMode(mode) if mode else OutputMode.UNORDERED,
        capacity=capacity,
        timeout=timeout,
        cache=cache,
        retry=retry,
        max_batch_size=lk.integer("max_batch_size", minimum=1),
        max_batch_wait=lk.number("max_batch_wait", minimum=0.0) or 0.0,
        max_queries=lk.integer("max_queries", minimum=1),
        min_match_ratio=ratio,
        resilience=resilience,
        **values,
    )


def _cache(lk: Table) -> CacheSpec | None:
    raw = lk.data.get("cache")
    if raw is None:
        return None
    kind = Table(raw, lk.field("cache"), lk.file, tuple(raw) if isinstance(raw, dict) else ())
    type_ = kind.text("type", required=True, choices=("lru", "full"))
    if type_ == "lru":
        c = cast("Table", lk.table("cache", ("type", "max_size", "ttl", "miss_ttl")))
        return CacheSpec(
            type="lru",
            max_size=c.integer("max_size", minimum=1, required=True),
            ttl=c.number("ttl", positive=True),
            miss_ttl=c.number("miss_ttl", minimum=0.0),
        )
    c = cast("Table", lk.table("cache", ("type", "reload_interval")))
    # Without reload_interval the table is loaded once, when the job starts.
    return CacheSpec(type="full", reload_interval=c.number("reload_interval", positive=True))


def _retry(lk: Table) -> RetrySpec | None:
    raw = lk.data.get("retry")
    if raw is None:
        return None
    kind = Table(raw, lk.field("retry"), lk.file, tuple(raw) if isinstance(raw, dict) else ())
    type_ = kind.text("type", required=True, choices=("exponential", "fixed"))
    if type_ == "fixed":
        r = cast("Table", lk.table("retry", ("type", "max_retries", "delay", "on_miss")))
        spec = RetrySpec(
            type="fixed",
            max_retries=r.integer("max_retries", minimum=0, required=True),
            delay=r.number("delay", required=True),
            on_miss=_flag(r, "on_miss"),
        )
    else:
        fields = (
            "type", "max_retries", "initial_delay", "max_delay", "multiplier", "jitter", "on_miss",
        )  # fmt: skip
        r = cast("Table", lk.table("retry", fields))
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
            on_miss=_flag(r, "on_miss"),
        )
    try:
        spec.strategy  # noqa: B018 - cross-field checks (max_delay >= initial_delay)
    except ValueError as exc:
        r.fail(r.name, str(exc))
    return spec


def _flag(table: Table, key: str) -> bool:
    value = table.data.get(key, False)
    if not isinstance(value, bool):
        table.fail(table.field(key), f"expected true or false, got {kind_of(value)} {value!r}")
    return value


def _sink(top: Table) -> SinkSpec:
    top.required("sink")
    sink = cast("Table", top.table("sink", ("type", "path")))
    type_ = sink.text("type", required=True, choices=_SINK_TYPES)
    if type_ == "stdout":
        if sink.has("path"):
            sink.fail(sink.field("path"), "not used by sink type 'stdout'")
        return SinkSpec(type="stdout")
    return SinkSpec(type=type_, path=sink.path("path", required=True))


def _checkpoint(top: Table) -> CheckpointSpec | None:
    cp = top.table("checkpoint", ("interval", "dir"))
    if cp is None:
        return None
    interval = cp.number("interval", positive=True, required=True)
    directory = cp.location("dir", cp.text("dir") or ".asyncwait/checkpoints")
    return CheckpointSpec(interval=interval, dir=directory)


def _errors(top: Table) -> ErrorsSpec | None:
    er = top.table("errors", ("path", "max_errors"))
    if er is None:
        return None
    return ErrorsSpec(path=er.path("path"), max_errors=er.integer("max_errors", minimum=0))


def _metrics(top: Table) -> MetricsSpec | None:
    mt = top.table("metrics", ("port", "host"))
    if mt is None:
        return None
    port = mt.integer("port", minimum=1, maximum=65535, required=True)
    return MetricsSpec(port=port, host=mt.text("host") or "127.0.0.1")
