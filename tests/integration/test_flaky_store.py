"""The misbehaving store does what its knobs say, seen by a plain aiohttp client.

No asyncwait here: these tests hold the test infrastructure (``_flaky_store.py``) to its
specification, so that the resilience tests built on it can trust what it reports.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from ._flaky_client import FlakyStore, OutageMode
from ._flaky_store import user_row

# uvloop's timers run on a millisecond clock read once per loop iteration, so a sleep may
# end up to a millisecond before the exact delay.
EARLY = 0.002


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None
    content_type: str
    body: bytes
    latency: float  # seconds from sending to the whole answer, at the client


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def fetch(session: aiohttp.ClientSession, url: str, body: object | None = None) -> Answer:
    sent = time.monotonic()
    method = "GET" if body is None else "POST"
    async with session.request(method, url, json=body) as response:
        data = await response.read()
        return Answer(
            response.status,
            response.headers.get("Retry-After"),
            response.content_type,
            data,
            time.monotonic() - sent,
        )


def user_url(store: FlakyStore, key: str) -> str:
    return store.url_template.format(key=key)


# --------------------------------------------------------------------------- answers


async def test_rows_misses_and_the_batch_endpoint(
    flaky_store: FlakyStore, session: aiohttp.ClientSession
) -> None:
    flaky_store.configure(keys=10)
    ok = await fetch(session, user_url(flaky_store, "user_3"))
    assert (ok.status, json.loads(ok.body)) == (200, user_row(3))
    for key in ("user_10", "user_03", "ghost"):  # outside the key space, or not its spelling
        assert (await fetch(session, user_url(flaky_store, key))).status == 404
    batch = await fetch(session, flaky_store.batch_url, {"keys": ["user_1", "ghost", "user_3"]})
    assert batch.status == 200
    assert json.loads(batch.body) == {"user_1": user_row(1), "ghost": None, "user_3": user_row(3)}
    bad = await fetch(session, flaky_store.batch_url, {"nokeys": []})
    assert bad.status == 400

    stats = flaky_store.stats()
    assert stats.received == 5  # the malformed batch never reached the store's model
    assert stats.statuses == {200: 2, 404: 3}
    assert (stats.batches, stats.batch_keys) == (1, 3)
    assert flaky_store.key_counts() == {
        "user_3": 2,
        "user_10": 1,
        "user_03": 1,
        "ghost": 2,
        "user_1": 1,
    }
    log = flaky_store.log()
    assert log.key == ["user_3", "user_10", "user_03", "ghost", ""]
    assert log.keys == [1, 1, 1, 1, 3]


async def test_html_mode_answers_200_with_a_page(
    flaky_store: FlakyStore, session: aiohttp.ClientSession
) -> None:
    flaky_store.configure(html=True)
    for answer in (
        await fetch(session, user_url(flaky_store, "user_1")),
        await fetch(session, flaky_store.batch_url, {"keys": ["user_1"]}),
    ):
        assert (answer.status, answer.content_type) == (200, "text/html")
        with pytest.raises(json.JSONDecodeError):
            json.loads(answer.body)
    flaky_store.configure(html=False)
    assert json.loads((await fetch(session, user_url(flaky_store, "user_1"))).body) == user_row(1)
    assert flaky_store.stats().html == 2


# --------------------------------------------------------------------------- latency

# A steep model, so that a store that ignored the knee, the step or the in-flight count
# would miss the windows below by several times their width.
LATENCY, KNEE, STEP = 0.02, 8, 0.004


def modelled(n: int) -> float:
    return LATENCY + STEP * max(0, n - KNEE)


async def closed_loop(
    session: aiohttp.ClientSession, store: FlakyStore, concurrency: int, seconds: float
) -> list[tuple[float, float]]:
    """``concurrency`` clients, each sending a GET as soon as its last is answered.

    Returns:
        ``(sent, latency)`` of every request, as the client measured them.
    """
    stop = time.monotonic() + seconds
    seen: list[tuple[float, float]] = []

    async def client(c: int) -> None:
        while time.monotonic() < stop:
            answer = await fetch(session, user_url(store, f"user_{c}"))
            assert answer.status == 200
            seen.append((time.monotonic() - answer.latency, answer.latency))

    await asyncio.gather(*(client(c) for c in range(concurrency)))
    return seen


async def test_latency_follows_the_requests_in_flight(
    flaky_store: FlakyStore, session: aiohttp.ClientSession
) -> None:
    flaky_store.configure(latency=LATENCY, knee=KNEE, step=STEP)
    for concurrency in (4, 12, 24):  # under the knee, a little over it, far over it
        t0 = time.monotonic()
        seen = await closed_loop(session, flaky_store, concurrency, 0.8)
        steady = t0 + 0.2  # connections opened, every client in its loop
        latencies = [latency for sent, latency in seen if sent >= steady]
        expected = modelled(concurrency)
        assert len(latencies) >= 0.5 * concurrency * 0.6 / expected, concurrency

        # The store saw what the client did: `concurrency` requests in flight (one of them
        # between the client and the store now and then), never more.
        log = flaky_store.log()
        ns = [n for t, n in zip(log.arrival, log.n, strict=True) if t >= steady]
        assert max(ns) <= concurrency
        # (A client slowed by a busy machine re-sends late: allow one more request missing.)
        assert concurrency - 2 <= statistics.median(ns) <= concurrency, concurrency

        # ...and the client waited what the model gives for that many.
        median = statistics.median(latencies)
        # The lower bound tells the model apart (the knee adds STEP per request); above it,
        # a busy machine adds its scheduling delays to what the client measures.
        low, high = modelled(concurrency - 2) - EARLY, expected * 1.5 + 0.01
        assert low <= median <= high, (concurrency, median, expected)
        flaky_store.reset()
        flaky_store.configure(latency=LATENCY, knee=KNEE, step=STEP)


async def test_the_log_gives_each_request_its_modelled_latency(
    flaky_store: FlakyStore, session: aiohttp.ClientSession
) -> None:
    flaky_store.configure(latency=0.03, knee=4, step=0.003)
    await asyncio.gather(*(fetch(session, user_url(flaky_store, f"user_{i}")) for i in range(24)))
    log = flaky_store.log()
    assert sorted(log.n) == list(range(1, 25))  # one wave: they all overlap at the store
    for n, model, actual in zip(log.n, log.model, log.actual, strict=True):
        assert model == pytest.approx(0.03 + 0.003 * max(0, n - 4))
        assert actual >= model - EARLY
    assert log.lateness(0.5) < 0.01  # the store's own delays are small next to the model


# --------------------------------------------------------------------------- rate limit


async def open_loop(
    session: aiohttp.ClientSession, url: str, rate: float, seconds: float
) -> list[Answer]:
    """Send a GET every ``1 / rate`` seconds for ``seconds``, whatever the answers."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(i: int) -> Answer:
        await asyncio.sleep(start + i / rate - loop.time())
        return await fetch(session, url)

    return await asyncio.gather(*(one(i) for i in range(int(rate * seconds))))


async def test_rate_limit_serves_its_rate_and_answers_429_above_it(
    flaky_store: FlakyStore, session: aiohttp.ClientSession
) -> None:
    rate, burst = 200.0, 20
    url = user_url(flaky_store, "user_1")
    flaky_store.configure(rate_limit=rate, burst=burst, retry_after=1)
    answers = await open_loop(session, url, 3 * rate, 3.0)
    assert {(a.status, a.retry_after) for a in answers} == {(200, None), (429, "1")}

    log = flaky_store.log()
    first, last = log.arrival[0], log.arrival[-1]
    served = log.count(status=200)
    assert served == sum(a.status == 200 for a in answers)
    # The bucket starts full: at most `burst` at once, then `rate` per second...
    assert served <= burst + rate * (last - first) + 1
    # ...and, asked three times as often, it serves `rate` per second (after the burst).
    steady = log.count(first + 0.5, last, status=200) / (last - first - 0.5)
    assert steady == pytest.approx(rate, rel=0.1)
    assert flaky_store.stats().throttled == sum(a.status == 429 for a in answers)

    flaky_store.configure(rate_limit=rate)  # a full bucket again
    below = await open_loop(session, url, 0.8 * rate, 1.0)
    assert {a.status for a in below} == {200}  # below the limit, nothing is refused

    flaky_store.configure(rate_limit=1, burst=1, retry_after=None)
    answers = [await fetch(session, url) for _ in range(3)]
    assert answers[0].status == 200
    assert {(a.status, a.retry_after) for a in answers[1:]} == {(429, None)}
    flaky_store.configure(retry_after=0.5)
    assert (await fetch(session, url)).retry_after == "0.5"


# --------------------------------------------------------------------------- outages


def poll(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (in a thread) until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def connect_error(port: int) -> int | None:
    """The errno of a fresh TCP connection to ``port``, or ``None`` if it connects."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return None
    except OSError as exc:
        return exc.errno


FAILS = {"refuse": "refused", "reset": "dropped", "503": "503"}


@pytest.mark.parametrize("mode", ["refuse", "reset", "503"])
async def test_outage_fails_every_request_of_its_window_and_none_outside(
    flaky_store: FlakyStore, mode: OutageMode
) -> None:
    url = user_url(flaky_store, "user_1")
    probes: list[tuple[float, str]] = []  # (sent, what came of it)
    # A new connection per probe: a refused outage shows as refused connections.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def probe(stop: float) -> None:
            while (sent := time.monotonic()) < stop:
                try:
                    async with session.get(url) as response:
                        await response.read()
                        probes.append((sent, str(response.status)))
                except aiohttp.ClientConnectorError as exc:
                    refused = exc.os_error.errno == errno.ECONNREFUSED
                    probes.append((sent, "refused" if refused else f"errno {exc.os_error.errno}"))
                except aiohttp.ServerDisconnectedError:
                    probes.append((sent, "dropped"))
                await asyncio.sleep(0.01)

        prober = asyncio.ensure_future(probe(time.monotonic() + 1.3))
        await asyncio.sleep(0.3)
        outage = await asyncio.to_thread(flaky_store.outage, 0.5, mode=mode)
        await prober

    assert outage.until is not None
    before = [what for sent, what in probes if sent < outage.start - 0.02]
    during = [what for sent, what in probes if outage.start <= sent < outage.until - 0.005]
    after = [what for sent, what in probes if sent >= outage.until + 0.05]
    assert len(before) >= 5
    assert len(during) >= 10
    assert len(after) >= 10
    assert set(before) == set(after) == {"200"}
    assert set(during) == {FAILS[mode]}
    ((start, end, _),) = flaky_store.stats().outages
    assert end is not None
    assert 0.5 <= end - start < 0.6  # ended by the store's own timer, on time


async def test_refuse_outage_closes_the_port_and_reopens_it(
    flaky_store: FlakyStore, session: aiohttp.ClientSession
) -> None:
    flaky_store.configure(latency=0.5)
    url = user_url(flaky_store, "user_1")
    in_flight = asyncio.ensure_future(fetch(session, url))
    await asyncio.to_thread(poll, lambda: flaky_store.stats().in_flight > 0)
    outage = flaky_store.outage(1.0, mode="refuse")
    assert outage.until == pytest.approx(outage.start + 1.0)
    with pytest.raises(aiohttp.ClientError):  # its connection was dropped
        await in_flight
    assert connect_error(flaky_store.port) == errno.ECONNREFUSED
    with pytest.raises(aiohttp.ClientConnectorError):
        await fetch(session, url)

    back = await asyncio.to_thread(flaky_store.wait_serving, 10.0)
    assert outage.until is not None
    assert back >= outage.until
    flaky_store.configure(latency=0)
    assert (await fetch(session, url)).status == 200  # the same port again
    stats = flaky_store.stats()
    ((start, end, mode),) = stats.outages
    assert (start, mode) == (outage.start, "refuse")
    assert end is not None
    assert 1.0 <= end - start < 5.0
    assert stats.aborted >= 1
    assert stats.during_outage == 0  # nobody got in
    assert stats.statuses == {0: 1, 200: 1}  # the dropped one was never answered

    flaky_store.outage(None, mode="refuse")  # until ended by hand
    assert connect_error(flaky_store.port) == errno.ECONNREFUSED
    flaky_store.end_outage()
    assert connect_error(flaky_store.port) is None


async def test_503_outage_with_and_without_retry_after(
    flaky_store: FlakyStore, session: aiohttp.ClientSession
) -> None:
    url = user_url(flaky_store, "user_2")
    outage = flaky_store.outage(0.5, mode="503", retry_after=2)
    first = await fetch(session, url)
    assert (first.status, first.retry_after) == (503, "2")
    back = await asyncio.to_thread(flaky_store.wait_serving, 10.0)
    assert outage.until is not None
    assert back >= outage.until
    assert (await fetch(session, url)).status == 200

    flaky_store.outage(None, mode="503")
    answers = [await fetch(session, url) for _ in range(3)]
    assert {(a.status, a.retry_after) for a in answers} == {(503, None)}
    flaky_store.end_outage()
    assert (await fetch(session, url)).status == 200
    stats = flaky_store.stats()
    assert stats.during_outage == 4
    assert stats.statuses == {503: 4, 200: 2}
    assert [mode for _, _, mode in stats.outages] == ["503", "503"]
    log = flaky_store.log()
    (start, end, _), _ = stats.outages
    assert end is not None
    assert log.count(start, end) == 1


async def test_reset_outage_drops_each_connection_and_counts_it(
    flaky_store: FlakyStore, session: aiohttp.ClientSession
) -> None:
    flaky_store.outage(None, mode="reset")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await fetch(session, user_url(flaky_store, "user_1"))
    flaky_store.end_outage()
    assert (await fetch(session, user_url(flaky_store, "user_1"))).status == 200
    stats = flaky_store.stats()
    # aiohttp tries an idempotent request once more on a new connection: both reach us.
    assert stats.during_outage >= 1
    assert stats.statuses[0] == stats.during_outage


async def test_reset_ends_an_outage_and_refused_commands_change_nothing(
    flaky_store: FlakyStore, session: aiohttp.ClientSession
) -> None:
    flaky_store.configure(latency=0.001)
    before = flaky_store.configure()
    with pytest.raises(ValueError, match="unknown knob 'knees'"):
        flaky_store.configure(latency=1.0, knees=3)
    with pytest.raises(ValueError, match="knee must be an integer >= 0"):
        flaky_store.configure(knee=-1)
    with pytest.raises(ValueError, match="rate_limit must be > 0"):
        flaky_store.configure(rate_limit=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        flaky_store.outage(1.0, mode="down")  # type: ignore[arg-type]
    assert flaky_store.configure() == before
    flaky_store.outage(None, mode="refuse")
    with pytest.raises(ValueError, match=r"an outage \(refuse\) is already on"):
        flaky_store.outage(1.0, mode="503")
    flaky_store.reset()
    assert flaky_store.stats().outage is None
    assert (await fetch(session, user_url(flaky_store, "user_1"))).status == 200
    assert flaky_store.configure()["latency"] == 0.0


# --------------------------------------------------------------------------- counters


async def test_counters_series_and_in_flight_maximum(
    flaky_store: FlakyStore, session: aiohttp.ClientSession
) -> None:
    flaky_store.configure(latency=0.2)
    await asyncio.gather(*(fetch(session, user_url(flaky_store, f"user_{i}")) for i in range(8)))
    flaky_store.configure(latency=0)
    start = flaky_store.log().arrival[0]
    for _ in range(12):
        await fetch(session, user_url(flaky_store, "user_9"))
    await asyncio.sleep(start + 1.0 - time.monotonic())  # into the next second
    for _ in range(5):
        await fetch(session, user_url(flaky_store, "ghost"))
    end = time.monotonic()

    stats = flaky_store.stats()
    assert stats.received == 25
    assert stats.statuses == {200: 20, 404: 5}
    assert stats.max_in_flight == 8
    assert stats.in_flight == 0
    assert flaky_store.key_counts()["user_9"] == 12
    log = flaky_store.log()
    assert log.series(start, end, 1.0) == [20, 5]
    assert log.series(start, end, 1.0, status=404) == [0, 5]
    assert log.count(start + 1.0, end) == 5
    assert sorted(log.n[:8]) == list(range(1, 9))
    assert stats.cpu > 0
    assert (stats.log_dropped, stats.errors) == (0, [])
