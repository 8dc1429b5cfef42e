"""Running a job file: event-time extraction, a readable description, and the dataflow."""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from ..errors import BadInputError, ConfigError
from ..retry import NO_RETRY
from ._spec import (
    EPOCH_FORMATS,
    CacheSpec,
    ErrorsSpec,
    JobSpec,
    LookupSpec,
    WatermarkSpec,
)

if TYPE_CHECKING:
    from ..runtime import StreamEnvironment

__all__ = (
    "build",
    "describe",
    "lookup_table",
    "missing_driver",
    "timestamp_extractor",
    "unavailable",
)

_MS: Final = timedelta(milliseconds=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ISO_SECONDS: Final = "%Y-%m-%d %H:%M:%S"
_ISO_SECONDS_RE: Final = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_MEMO_SIZE: Final = 4096  # timestamp texts remembered per extractor


def timestamp_extractor(spec: WatermarkSpec) -> Callable[[Any], int]:
    """Return the function reading an event's time (ms since the epoch) as ``spec`` says.

    Naive ``strptime`` results are taken as UTC. A missing or unparsable field raises
    :class:`~asyncwait.BadInputError` naming the field and the value, which the runtime routes
    to the errors file.

    >>> ts = timestamp_extractor(WatermarkSpec("eventTime", "%Y-%m-%d %H:%M:%S"))
    >>> ts({"eventTime": "2016-06-06 07:03:42"})
    1465196622000
    """
    field = spec.timestamp_field
    fmt = spec.timestamp_format

    def missing() -> BadInputError:
        msg = f"event has no timestamp field {field!r}"
        return BadInputError(msg)

    def bad(value: object, why: str) -> BadInputError:
        msg = f"timestamp field {field!r}: {value!r} {why}"
        return BadInputError(msg)

    if fmt in EPOCH_FORMATS:
        scale = 1 if fmt == "epoch_ms" else 1000

        def epoch(event: Any) -> int:
            try:
                value = event[field]
            except (KeyError, TypeError, IndexError):
                raise missing() from None
            if isinstance(value, str):
                try:
                    value = float(value) if "." in value or "e" in value.lower() else int(value)
                except ValueError:
                    raise bad(value, f"is not a number ({fmt})") from None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(value, f"is not a number ({fmt})")
            if isinstance(value, float) and not math.isfinite(value):
                raise bad(value, "is not a finite number")
            return value * scale if isinstance(value, int) else round(value * scale)

        return epoch

    # Events of one second share their timestamp text: a small memo skips most parses, and
    # the common ISO layout has an exact fast parser (strptime is slow).
    fast = fmt == _ISO_SECONDS
    memo: dict[str, int] = {}

    def parse_time(event: Any) -> int:
        try:
            value = event[field]
        except (KeyError, TypeError, IndexError):
            raise missing() from None
        if type(value) is str:
            ms = memo.get(value)
            if ms is not None:
                return ms
        else:
            raise bad(value, f"is not a string in the format {fmt!r}")
        try:
            if fast and _ISO_SECONDS_RE.fullmatch(value):
                parsed = datetime.fromisoformat(value)
            else:
                parsed = datetime.strptime(value, fmt)  # noqa: DTZ007 - made UTC below
        except ValueError:
            raise bad(value, f"does not match the format {fmt!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = (parsed - _EPOCH) // _MS
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[value] = ms
        return ms

    return parse_time


# --------------------------------------------------------------------------- description


def describe(spec: JobSpec) -> str:
    """Return a short, human-readable description of the pipeline ``spec`` runs.

    Connection strings (``dsn``) are never shown: they may hold passwords.

    >>> from asyncwait.jobfile import SinkSpec, SourceSpec
    >>> print(describe(JobSpec(Path("j.toml"), "j", SourceSpec("stdin"), SinkSpec("stdout"))))
    job 'j' (j.toml)
      source     stdin
      sink       stdout
    """
    lines = [f"job {spec.name!r} ({spec.file})"]
    src = spec.source
    text = src.type if src.path is None else f"{src.type} {src.path}"
    if src.watermarks:
        wm = src.watermarks
        text += (
            f"; event time from {wm.timestamp_field!r} ({wm.timestamp_format}), "
            f"out-of-orderness {wm.max_out_of_orderness_ms} ms"
        )
    lines.append(f"  source     {text}")
    for i, lk in enumerate(spec.lookups):
        lines.append(f"  lookup[{i}]  {_describe_lookup(lk)}")
    sink = spec.sink
    lines.append(f"  sink       {sink.type if sink.path is None else f'{sink.type} {sink.path}'}")
    if spec.errors:
        where = spec.errors.path or "(not written)"
        limit = "no limit" if spec.errors.max_errors is None else spec.errors.max_errors
        lines.append(f"  errors     {where} (max_errors: {limit})")
    if spec.checkpoint:
        cp = spec.checkpoint
        lines.append(f"  checkpoint every {cp.interval:g} s into {cp.dir}")
    return "\n".join(lines)


def _without_secrets(url: str) -> str:
    """``url`` without ``user:password@`` and with its query values masked: safe to print."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = "&".join(f"{name}=***" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=query))


def _describe_lookup(lk: LookupSpec) -> str:
    target = lk.path or lk.dsn or lk.url
    if lk.type in ("postgres", "mysql"):
        target = "<dsn>"  # never print credentials
    elif lk.type in ("redis", "http") and target:
        target = _without_secrets(str(target))
    what = f"{lk.type} {target}"
    if lk.table:
        table = lk.table if lk.schema is None else f"{lk.schema}.{lk.table}"
        what += f" table {table} key {lk.key}"
    cols = ", ".join(lk.columns) if lk.columns else "all columns"
    opts = [
        f"{lk.how} join on {lk.on!r} -> {cols}",
        f"{lk.mode.value}",
        f"capacity {lk.capacity}",
        "no timeout" if lk.timeout is None else f"timeout {lk.timeout:g} s",
    ]
    if lk.cache is None:
        opts.append("no cache")
    elif lk.cache.type == "lru":
        opts.append(f"lru cache of {lk.cache.max_size}")
    else:
        every = lk.cache.reload_interval
        opts.append("full cache" + ("" if every is None else f" reloaded every {every:g} s"))
    if lk.retry is not None:
        opts.append(f"{lk.retry.type} retry x{lk.retry.max_retries}")
    if lk.max_batch_size is not None or lk.max_batch_wait:
        size = "default" if lk.max_batch_size is None else lk.max_batch_size
        opts.append(f"batches of {size} keys, waiting {lk.max_batch_wait:g} s")
    if lk.max_queries is not None:
        opts.append(f"max_queries {lk.max_queries}")
    if lk.pool_size is not None:
        opts.append(f"pool_size {lk.pool_size}")
    if lk.min_match_ratio is not None:
        opts.append(f"min_match_ratio {lk.min_match_ratio:g}")
    opts += _resilience_shown(lk)
    return f"{what}; {'; '.join(opts)}"


def _resilience_shown(lk: LookupSpec) -> list[str]:
    """The resilience options of ``lk`` as ``validate`` describes them."""
    res = lk.resilience
    opts = []
    if res.on_error != "fail":
        opts.append(f"on_error {res.on_error}")
    if res.attempt_timeout is not None:
        opts.append(f"attempt_timeout {res.attempt_timeout:g} s")
    if lk.retry is not None and lk.retry.on_miss:
        opts.append("retry on a miss")
    if res.rate_limit is not None:
        burst = res.rate_limit.burst
        opts.append(
            f"rate_limit {res.rate_limit.rate:g}/s" + ("" if burst is None else f" burst {burst:g}")
        )
    if res.adaptive is not None:
        opts.append(f"adaptive {res.adaptive.min}..{res.adaptive.max}")
    if res.circuit_breaker is not None:
        cb = res.circuit_breaker
        opts.append(
            f"circuit_breaker {cb.failure_ratio:g} of {cb.min_calls} calls, open {cb.open_for:g} s"
        )
    return opts


def _resilience_options(lk: LookupSpec) -> dict[str, Any]:
    """``lookup_join``'s keyword arguments for the resilience fields of ``lk``."""
    res = lk.resilience
    rate = res.rate_limit
    return {
        "on_error": res.on_error,
        "default": res.default,
        "attempt_timeout": res.attempt_timeout,
        "rate_limit": None if rate is None else rate.rate,
        "burst": None if rate is None else rate.burst,
        "adaptive": res.adaptive,
        "circuit_breaker": res.circuit_breaker,
    }


# --------------------------------------------------------------------------- building


# The driver each lookup type imports when it opens, and the extra that installs it.
_DRIVERS: dict[str, str] = {
    "sqlite": "aiosqlite",
    "postgres": "asyncpg",
    "mysql": "aiomysql",
    "redis": "redis",
    "http": "aiohttp",
}


def missing_driver(type_: str) -> str | None:
    """The driver module lookup type ``type_`` needs when it is not installed, else None."""
    driver = _DRIVERS.get(type_)
    if driver is None:
        return None
    try:
        found = importlib.util.find_spec(driver)
    except (ImportError, ValueError):
        found = None
    return driver if found is None else None


def _needs(type_: str, driver: str) -> str:
    return (
        f"lookup type {type_!r} needs its driver {driver}, which is not installed: "
        f"pip install 'asyncwait[{type_}]'"
    )


def unavailable(spec: JobSpec) -> list[str]:
    """Return a note for each lookup whose driver this installation lacks."""
    notes = []
    for i, lk in enumerate(spec.lookups):
        driver = missing_driver(lk.type)
        if driver is not None:
            notes.append(f"lookup[{i}].type: {_needs(lk.type, driver)}; `asyncwait run` will fail")
    return notes


def build(
    spec: JobSpec, *, fresh: bool = False, wrap_lookup: Callable[[Any], Any] | None = None
) -> StreamEnvironment:
    """Build the dataflow ``spec`` describes, ready for ``execute``/``execute_async``.

    Nothing is opened or written here: files and connections open when the job runs.

    Args:
        spec: a validated job.
        fresh: start over, ignoring any checkpoint a previous run left.
        wrap_lookup: applied to every lookup table before it is joined (the demo uses it to
            add simulated latency).

    Returns:
        The environment holding the pipeline.

    Raises:
        ConfigError: a lookup type's driver (its extra) is not installed.
    """
    tables = [lookup_table(spec, i, lk) for i, lk in enumerate(spec.lookups)]

    from .. import sinks, sources
    from ..runtime import StreamEnvironment
    from ..watermarks import WatermarkStrategy

    if wrap_lookup is not None:
        tables = [wrap_lookup(table) for table in tables]
    errors = spec.errors or ErrorsSpec()
    cp = spec.checkpoint
    env = StreamEnvironment(
        None if cp is None else cp.interval,
        None if cp is None else cp.dir,
        name=spec.name,
        errors_path=errors.path,
        max_errors=errors.max_errors,
        fresh=fresh,
    )
    src = spec.source
    if src.type == "stdin":
        source = sources.stdin()
    elif src.type == "csv":
        source = sources.csv(cast("Path", src.path))
    else:
        source = sources.jsonl(cast("Path", src.path))
    stream = env.from_source(source)
    if src.watermarks is not None:
        wm = src.watermarks
        strategy = WatermarkStrategy.for_bounded_out_of_orderness(
            wm.max_out_of_orderness_ms, timestamp=timestamp_extractor(wm)
        )
        stream = stream.assign_timestamps_and_watermarks(strategy)
    for i, (lk, table) in enumerate(zip(spec.lookups, tables, strict=True)):
        stream = stream.lookup_join(
            table,
            on=lk.on,
            mode=lk.mode,
            cache=_cache_of(lk.cache),
            how=lk.how,
            capacity=lk.capacity,
            max_batch_size=lk.max_batch_size,
            max_batch_wait=lk.max_batch_wait,
            max_queries=lk.max_queries,
            timeout=lk.timeout,
            retry=NO_RETRY if lk.retry is None else lk.retry.strategy,
            name=f"lookup[{i}]:{lk.table or lk.type}",
            # An SQL table returns only its columns; redis and http rows are whatever the
            # store holds, so the join keeps the declared columns (None on a miss).
            columns=lk.columns if lk.type in ("redis", "http") else None,
            min_match_ratio=lk.min_match_ratio,
            **_resilience_options(lk),
        )
    sink = spec.sink
    if sink.type == "stdout":
        stream.sink_to(sinks.stdout())
    elif sink.type == "csv":
        # The lookups' declared columns join the header (after the first event's own
        # fields): a left join adds them to matched events only.
        declared = dict.fromkeys(c for lk in spec.lookups for c in lk.columns or ())
        stream.sink_to(sinks.csv(cast("Path", sink.path), columns=list(declared)))
    else:
        stream.sink_to(sinks.jsonl(cast("Path", sink.path)))
    return env


def lookup_table(spec: JobSpec, index: int, lk: LookupSpec) -> Any:
    """Create the lookup table of ``lk`` (nothing connects until the job opens it).

    Raises:
        ConfigError: its driver is not installed, or its connector refuses an option
            (naming ``lookup[index]`` and the option).
    """
    from .. import lookups

    factory = getattr(lookups, lk.type)
    driver = missing_driver(lk.type)
    if driver is not None:
        msg = f"{spec.file}: lookup[{index}].type: {_needs(lk.type, driver)}"
        raise ConfigError(msg)
    try:
        if lk.type == "sqlite":
            return factory(lk.path, table=lk.table, key=lk.key, columns=lk.columns)
        if lk.type == "postgres":
            return factory(
                lk.dsn,
                table=lk.table,
                key=lk.key,
                columns=lk.columns,
                schema=lk.schema,
                pool_size=lk.pool_size,
            )
        if lk.type == "mysql":
            return factory(
                lk.dsn, table=lk.table, key=lk.key, columns=lk.columns, pool_size=lk.pool_size
            )
        if lk.type == "redis":
            return factory(
                lk.url,
                key_prefix=lk.key_prefix or "",
                value=lk.value or "hash",
                pool_size=lk.pool_size,
            )
        return factory(lk.url, method=lk.method or "GET")
    except ConfigError as exc:
        msg = f"{spec.file}: lookup[{index}]: {exc}"
        raise ConfigError(msg) from exc
    except ImportError as exc:
        msg = (
            f"{spec.file}: lookup[{index}].type: lookup type {lk.type!r} needs "
            f"pip install 'asyncwait[{lk.type}]' ({exc})"
        )
        raise ConfigError(msg) from exc


def _cache_of(spec: CacheSpec | None) -> Any:
    from .. import cache

    if spec is None:
        return None
    if spec.type == "lru":
        return cache.lru(cast("int", spec.max_size), ttl=spec.ttl, miss_ttl=spec.miss_ttl)
    return cache.full(spec.reload_interval)
