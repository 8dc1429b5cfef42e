"""lookups.http against a real aiohttp server on loopback (see ``_httpserver.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

import asyncwait
from asyncwait import (
    AsyncFunctionError,
    ClosedError,
    ConfigError,
    OutputMode,
    StreamEnvironment,
    cache,
    lookups,
    retry,
    sinks,
)
from asyncwait.function import AsyncFunction, RuntimeContext
from asyncwait.join import LookupJoin
from asyncwait.lookups import HttpStatusError, LookupFailedError

from ._httpserver import TOKEN, HttpServer, start_http_server, user_row
from ._system import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "q-secret-J2m"  # a query-string secret: never in a message
PASSWORD = "basic-pw-T6x"

RETRY_TRANSIENT = retry.fixed_delay(3, 0.01, on_exception=HttpStatusError.is_retryable)


@pytest.fixture
def service(http_server: HttpServer) -> Iterator[HttpServer]:
    """The session's service with no faults and fresh counters."""
    http_server.reset()
    yield http_server
    http_server.reset()


def _events(n: int, keys: int) -> list[dict[str, Any]]:
    # Every 7th event asks for a user the service does not know (404).
    return [{"userID": f"user_{i % keys}" if i % 7 else f"ghost_{i}", "n": i} for i in range(n)]


def _expected(event: dict[str, Any]) -> dict[str, Any]:
    uid = event["userID"]
    if uid.startswith("ghost"):
        return event
    return {**event, **user_row(int(uid.split("_")[1]))}


# --------------------------------------------------------------------------- the contract


async def test_contract_get_get_many_and_no_scan(service: HttpServer) -> None:
    table = lookups.http(service.url_template, pool_size=4)
    assert table.name == service.url_template
    with pytest.raises(ClosedError, match="not open yet"):
        await table.get("user_1")
    await table.open()
    try:
        assert await table.get("user_3") == user_row(3)
        assert await table.get("ghost") is None  # 404
        many = await table.get_many(["user_1", "ghost", "user_2", "user_1"])
        assert many == {"user_1": user_row(1), "ghost": None, "user_2": user_row(2)}
        with pytest.raises(ConfigError, match=r"use cache\.lru"):
            table.scan()
        stats = table.statistics()
        assert (stats.requests, stats.batch_requests, stats.in_flight) == (5, 0, 0)
    finally:
        await table.close()
    await table.close()
    with pytest.raises(ClosedError, match="was closed"):
        await table.get("user_1")


async def test_keys_are_url_quoted(service: HttpServer) -> None:
    table = lookups.http(service.url_template)
    await table.open()
    try:
        assert await table.get("a/b c?d") is None
    finally:
        await table.close()
    assert service.stats()["requests"] == {"a/b c?d": 1}


async def test_batch_endpoint_answers_a_batch_in_one_request(service: HttpServer) -> None:
    table = lookups.http(service.url_template, batch_url=service.batch_url)
    await table.open()
    try:
        keys = [f"user_{i}" for i in range(10)] + ["ghost"]
        many = await table.get_many(keys)
        assert many == {k: None if k == "ghost" else user_row(int(k[5:])) for k in keys}
        assert table.statistics().batch_requests == 1
    finally:
        await table.close()
    assert service.stats()["batch_sizes"] == [11]


async def test_post_method_sends_the_key_in_the_body(service: HttpServer) -> None:
    table = lookups.http(f"{service.base}/users", method="POST")
    assert table.name.endswith("(POST)")
    await table.open()
    try:
        assert await table.get("user_4") == user_row(4)
        assert await table.get("ghost") is None
    finally:
        await table.close()


async def test_full_cache_is_refused_clearly(service: HttpServer) -> None:
    join = LookupJoin(lookups.http(service.url_template), on="userID", cache=cache.full(None))
    with pytest.raises(ConfigError, match=r"cannot list its whole table.*cache\.lru"):
        _ = [e async for e in asyncwait.ordered_wait([{"userID": "user_1"}], join)]


async def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"must contain '\{key\}' for GET"):
        lookups.http("http://127.0.0.1:1/users")
    with pytest.raises(ConfigError, match="http:// or https://") as info:
        lookups.http(f"ftp://u:{PASSWORD}@127.0.0.1/users/{{key}}")
    assert PASSWORD not in str(info.value)
    with pytest.raises(ConfigError, match="method must be"):
        lookups.http("http://127.0.0.1:1/users/{key}", method="DELETE")
    with pytest.raises(ConfigError, match="max_retry_after"):
        lookups.http("http://127.0.0.1:1/users/{key}", max_retry_after=-1)


# --------------------------------------------------------------------------- credentials


async def test_credentials_from_the_environment_and_masked_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_http_server(rows=10, token=TOKEN)
    try:
        url = f"http://bob:{PASSWORD}@127.0.0.1:{server.port}/users/{{key}}?api_key={SECRET}"
        monkeypatch.setenv("DIM_AUTH", TOKEN)
        table = lookups.http(url, authorization_env="DIM_AUTH")
        shown = f"http://127.0.0.1:{server.port}/users/{{key}}?api_key=***"
        assert table.name == shown
        await table.open()
        try:
            assert await table.get("user_1") == user_row(1)
        finally:
            await table.close()

        monkeypatch.setenv("DIM_AUTH", "Bearer wrong")
        await table.open()
        try:
            with pytest.raises(HttpStatusError) as info:
                await table.get("user_1")
        finally:
            await table.close()
        error = info.value
        assert error.status == 401
        assert not error.retryable
        assert not HttpStatusError.is_retryable(error)
        message = str(error)
        assert "401" in message
        assert "/users/user_1?api_key=***" in message
        for secret in (PASSWORD, SECRET, TOKEN, "Bearer wrong"):
            assert secret not in message
            assert secret not in repr(table)

        monkeypatch.delenv("DIM_AUTH")
        with pytest.raises(ConfigError, match="DIM_AUTH"):
            await table.open()
    finally:
        server.stop()


# --------------------------------------------------------------------------- joins


@pytest.mark.parametrize("mode", list(OutputMode))
@pytest.mark.parametrize("batch", [False, True], ids=["per-key", "batch-endpoint"])
async def test_lookup_join_in_every_mode(
    service: HttpServer, mode: OutputMode, batch: bool
) -> None:
    events = _events(300, 50)
    env = StreamEnvironment()
    out = (
        env.from_collection(events)
        .lookup_join(
            lookups.http(service.url_template, batch_url=service.batch_url if batch else None),
            on="userID",
            mode=mode,
            capacity=16,
            timeout=10.0,
            retry=RETRY_TRANSIENT,
        )
        .sink_to(sinks.collect())
    )
    await env.execute_async()
    expected = [_expected(e) for e in events]
    if mode is OutputMode.ORDERED:
        assert out.values == expected
    else:
        assert sorted(out.values, key=lambda e: e["n"]) == expected
    stats = service.stats()
    assert bool(stats["batch_sizes"]) is batch


@pytest.mark.parametrize("fault", ["malformed", "non_object"])
@pytest.mark.parametrize("batch", [False, True], ids=["per-key", "batch-endpoint"])
async def test_a_bad_response_is_a_failed_lookup_asked_once(
    service: HttpServer, fault: str, batch: bool, tmp_path: Path
) -> None:
    # A body the table cannot read is the service's fault, not the event's: not bad input
    # (no errors file entry, no "succeeded"), and the batch is not asked again key by key.
    service.faults(**{fault: ["user_5"]})
    events = [{"userID": f"user_{i}", "n": i} for i in range(30)]
    env = StreamEnvironment(errors_path=tmp_path / "errors.jsonl")
    (
        env.from_collection(events)
        .lookup_join(
            lookups.http(service.url_template, batch_url=service.batch_url if batch else None),
            on="userID",
            capacity=30,
        )
        .sink_to(sinks.collect())
    )
    with pytest.raises(AsyncFunctionError) as info:
        await env.execute_async()
    cause = info.value.__cause__
    assert isinstance(cause, LookupFailedError)
    assert cause.table == lookups.http(service.url_template).name
    reason = str(cause)
    if batch:
        assert f"127.0.0.1:{service.port}/users/_batch" in reason
        assert ("not JSON" if fault == "malformed" else "expected a JSON object or null") in reason
        assert service.stats()["requests"] == {}
    else:
        assert "'user_5'" in reason
        assert f"127.0.0.1:{service.port}/users/user_5" in reason
        assert ("is not JSON" if fault == "malformed" else "not an object") in reason
        requests = service.stats()["requests"]
        assert requests["user_5"] == 1
        assert set(requests.values()) == {1}  # each key asked once, none again alone
    assert (tmp_path / "errors.jsonl").read_text() == ""


# --------------------------------------------------------------------------- faults


async def test_429_retry_after_is_honoured_inside_the_call(service: HttpServer) -> None:
    past = format_datetime(datetime(2001, 1, 1, tzinfo=UTC), usegmt=True)
    service.faults(fail={"user_1": [[429, "1"]], "user_2": [[503, past]]})
    table = lookups.http(service.url_template)
    await table.open()
    try:
        assert await table.get("user_1") == user_row(1)
        assert await table.get("user_2") == user_row(2)  # an HTTP date in the past: no wait
        stats = table.statistics()
        assert (stats.retry_after_waits, stats.retry_after_seconds) == (2, 1.0)
    finally:
        await table.close()
    assert service.stats()["requests"] == {"user_1": 2, "user_2": 2}


async def test_retry_after_zero_forever_is_bounded(service: HttpServer) -> None:
    service.faults(fail={"user_1": [[429, "0"]] * 10})
    table = lookups.http(service.url_template)
    await table.open()
    try:
        with pytest.raises(HttpStatusError, match="answered 429"):
            await table.get("user_1")
        assert table.statistics().retry_after_waits == 5
    finally:
        await table.close()
    assert service.stats()["requests"] == {"user_1": 6}


async def test_retry_after_beyond_the_bound_goes_to_the_retry_strategy(
    service: HttpServer,
) -> None:
    service.faults(fail={"user_1": [[429, "120"]]})
    table = lookups.http(service.url_template, max_retry_after=5.0)
    await table.open()
    try:
        with pytest.raises(HttpStatusError) as info:
            await table.get("user_1")
    finally:
        await table.close()
    error = info.value
    assert (error.status, error.retry_after, error.retryable) == (429, 120.0, True)
    assert "Retry-After: 120 s" in str(error)

    service.faults(fail={"user_1": [[429, "120"]]})
    join = LookupJoin(lookups.http(service.url_template), on="userID")
    got = [
        e
        async for e in asyncwait.ordered_wait(
            [{"userID": "user_1"}], join, retry=RETRY_TRANSIENT, timeout=10.0
        )
    ]
    assert got == [{"userID": "user_1", **user_row(1)}]
    assert join.statistics().lookup_errors == 1


async def test_5xx_is_retried_and_exhausted_retries_fail_clearly(service: HttpServer) -> None:
    events = [{"userID": "user_2"}, {"userID": "user_3"}, {"userID": "ghost"}]
    service.faults(fail={"user_2": [[500, None], [503, None]]})
    join = LookupJoin(lookups.http(service.url_template), on="userID")
    got = [e async for e in asyncwait.ordered_wait(events, join, retry=RETRY_TRANSIENT)]
    assert got == [_expected(e) for e in events]
    assert service.stats()["requests"]["user_2"] == 3

    service.reset()
    service.faults(fail_batch=[[502, None]])  # the batch endpoint fails once
    join = LookupJoin(lookups.http(service.url_template, batch_url=service.batch_url), on="userID")
    got = [e async for e in asyncwait.ordered_wait(events, join, retry=RETRY_TRANSIENT)]
    assert got == [_expected(e) for e in events]
    assert service.stats()["batch_sizes"]  # the batch endpoint was used, and retried

    service.faults(fail={"user_2": [[500, None]] * 5})
    join = LookupJoin(lookups.http(service.url_template), on="userID")
    with pytest.raises(AsyncFunctionError) as info:
        _ = [
            e
            async for e in asyncwait.ordered_wait(
                [{"userID": "user_2"}], join, retry=RETRY_TRANSIENT
            )
        ]
    cause = info.value.__cause__
    assert isinstance(cause, HttpStatusError)
    assert cause.status == 500
    assert f"GET http://127.0.0.1:{service.port}/users/user_2 answered 500" in str(cause)


async def test_refused_connection_names_host_port_not_password() -> None:
    port = free_port()
    table = lookups.http(f"http://bob:{PASSWORD}@127.0.0.1:{port}/users/{{key}}?t={SECRET}")
    with pytest.raises(ConnectionError) as info:
        await table.open()
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert PASSWORD not in message
    assert SECRET not in message


async def test_server_gone_mid_run_is_a_connection_error() -> None:
    server = start_http_server(rows=10)
    table = lookups.http(server.url_template)
    await table.open()
    try:
        assert await table.get("user_1") == user_row(1)
        server.stop()
        with pytest.raises(ConnectionError, match=f"127.0.0.1:{server.port}"):
            await table.get("user_2")
        assert HttpStatusError.is_retryable(ConnectionError())
    finally:
        await table.close()
        server.stop()


class _JoinWithFallback(AsyncFunction[dict[str, Any], dict[str, Any]]):
    """A lookup join whose ``timeout()`` hook emits the event marked as not enriched."""

    def __init__(self, join: LookupJoin) -> None:
        self.join = join
        self.timeouts = 0

    async def open(self, context: RuntimeContext) -> None:
        await self.join.open(context)

    async def close(self) -> None:
        await self.join.close()

    async def async_invoke(self, value: dict[str, Any]) -> Iterable[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.join.async_invoke(value)
        return result

    def timeout(self, value: dict[str, Any]) -> Iterable[dict[str, Any]]:
        self.timeouts += 1
        return [{**value, "enriched": False}]


async def test_slow_response_times_out_into_the_timeout_hook(service: HttpServer) -> None:
    service.faults(delay={"user_3": 60})
    function = _JoinWithFallback(
        LookupJoin(lookups.http(service.url_template), on="userID", max_batch_size=1)
    )
    events = [{"userID": f"user_{i}"} for i in range(5)]
    got = [e async for e in asyncwait.ordered_wait(events, function, capacity=5, timeout=0.5)]
    assert got == [
        {**e, "enriched": False} if e["userID"] == "user_3" else _expected(e) for e in events
    ]
    assert function.timeouts == 1


async def test_inner_join_drops_404s(service: HttpServer) -> None:
    events = _events(50, 10)
    env = StreamEnvironment()
    stream = env.from_collection(events).lookup_join(
        lookups.http(service.url_template), on="userID", how="inner"
    )
    collected = stream.sink_to(sinks.collect())
    await env.execute_async()
    assert sorted(collected.values, key=lambda e: e["n"]) == [
        _expected(e) for e in events if not e["userID"].startswith("ghost")
    ]


# --------------------------------------------------------------------------- job file, example


def test_job_file_with_an_http_lookup(service: HttpServer, tmp_path: Path) -> None:
    events = [{"userID": f"user_{i}", "n": i} for i in range(5)] + [{"userID": "ghost", "n": 5}]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp_path / "job.toml").write_text(
        f"""
[job]
name = "http-enrich"

[source]
type = "jsonl"
path = "events.jsonl"

[[lookup]]
type = "http"
url = "{service.url_template}"
method = "GET"
on = "userID"
mode = "ordered"
timeout = 10.0
retry = {{ type = "exponential", max_retries = 3, initial_delay = 0.05, max_delay = 0.5 }}

[sink]
type = "jsonl"
path = "out.jsonl"
"""
    )
    service.faults(fail={"user_1": [[503, None]]})
    done = subprocess.run(
        [sys.executable, "-m", "asyncwait", "run", "job.toml", "--quiet", "--fresh"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == [_expected(e) for e in events]


def test_example_http_enrich(service: HttpServer, tmp_path: Path) -> None:
    env = {**os.environ, "DIM_USER_URL": service.url_template, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "http_enrich.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "'age': 19" in done.stdout
    assert "ghost" in done.stdout
    assert service.stats()["requests"]
