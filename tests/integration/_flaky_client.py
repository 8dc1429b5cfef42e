"""The test side of the misbehaving store (``_flaky_store.py``): start it, drive it, read it.

:func:`start_flaky_store` runs the store in a new process and returns a :class:`FlakyStore`
handle; its methods talk to the store's control port (blocking, about a millisecond each:
from a coroutine that must not stall its loop, wrap them in ``asyncio.to_thread``).

Fixtures: ``flaky_store_server`` is one store for the whole session; ``flaky_store`` is that
store reset to :data:`~tests.integration._flaky_store.DEFAULTS` (knobs, counters, log, no
outage) before and after the test::

    async def test_backs_off(flaky_store: FlakyStore) -> None:
        flaky_store.configure(latency=0.005, knee=32, step=0.002, rate_limit=500)
        table = lookups.http(flaky_store.url_template, batch_url=flaky_store.batch_url)
        ...
        flaky_store.outage(2.0, mode="refuse")  # back on the same port 2 s later
        ...
        stats = flaky_store.stats()
        assert stats.during_outage < 100 and stats.throttled > 0
        log = flaky_store.log()
        assert log.count(t0, t0 + 10) / 10 == pytest.approx(500, rel=0.05)

``bench/_flaky.py`` starts its own store with the same function.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

__all__ = (
    "FlakyStore",
    "Outage",
    "OutageMode",
    "StoreLog",
    "StoreStats",
    "flaky_store",
    "flaky_store_server",
    "start_flaky_store",
)

ROOT = Path(__file__).resolve().parents[2]
OutageMode = Literal["refuse", "reset", "503"]


@dataclass(frozen=True, slots=True)
class StoreStats:
    """The store's counters since its last reset (times: ``time.monotonic()``).

    Attributes:
        now: when the store read them.
        since: when it was last reset (or started).
        received: requests that reached the store (a ``refuse`` outage's never do).
        statuses: answers by HTTP status; 0 counts requests whose connection the store
            dropped without an answer (a ``reset`` outage, or in flight when a ``refuse``
            outage began).
        in_flight: requests being answered now; max_in_flight: the most at once.
        during_outage: requests received while an outage was on (``reset`` or ``503``).
        aborted: open connections dropped when a ``refuse`` outage began.
        batches, batch_keys: requests to the batch endpoint, and the keys they asked.
        html: answers sent as an HTML page.
        outages: ``(start, end or None, mode)`` of each outage.
        outage: the mode of the outage on now, or ``None``.
        config: the knobs.
        cpu: CPU seconds the store process has used (user + system) since it started.
        log_dropped: requests not logged because the log was full.
        errors: problems of the store itself (e.g. its port could not be reopened).
    """

    now: float
    since: float
    received: int
    statuses: dict[int, int]
    in_flight: int
    max_in_flight: int
    during_outage: int
    aborted: int
    batches: int
    batch_keys: int
    html: int
    outages: list[tuple[float, float | None, str]]
    outage: str | None
    config: dict[str, Any]
    cpu: float
    log_dropped: int
    errors: list[str]

    @property
    def throttled(self) -> int:
        """429 answers sent."""
        return self.statuses.get(429, 0)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoreStats:
        data = dict(data)
        data["statuses"] = {int(k): v for k, v in data["statuses"].items()}
        data["outages"] = [(s, e, m) for s, e, m in data["outages"]]
        return cls(**data)


@dataclass(frozen=True, slots=True)
class StoreLog:
    """One entry per request received, in arrival order (columns of equal length).

    Attributes:
        arrival: when it arrived (``time.monotonic()``).
        n: requests in flight when it arrived, itself included.
        status: the answer's status (0: dropped without an answer, see :class:`StoreStats`).
        model: the latency the model gave it (0 for 429/503 and outages: answered at once).
        actual: seconds from its arrival to its answer, as the store measured them.
        key: the key of a ``GET``; ``""`` for a batch.
        keys: the keys a batch asked for (0 for a ``GET``).
    """

    arrival: list[float]
    n: list[int]
    status: list[int]
    model: list[float]
    actual: list[float]
    key: list[str]
    keys: list[int]

    def _selected(
        self, start: float | None, end: float | None, status: int | Sequence[int] | None
    ) -> Iterator[int]:
        wanted = (status,) if isinstance(status, int) else status
        for i, t in enumerate(self.arrival):
            if start is not None and t < start:
                continue
            if end is not None and t >= end:
                continue
            if wanted is not None and self.status[i] not in wanted:
                continue
            yield i

    def count(
        self,
        start: float | None = None,
        end: float | None = None,
        *,
        status: int | Sequence[int] | None = None,
    ) -> int:
        """Requests that arrived in ``[start, end)`` (with one of ``status``, if given)."""
        return sum(1 for _ in self._selected(start, end, status))

    def series(
        self,
        start: float,
        end: float,
        bucket: float = 1.0,
        *,
        status: int | Sequence[int] | None = None,
    ) -> list[int]:
        """Requests per ``bucket`` seconds from ``start`` to ``end`` (a time series)."""
        counts = [0] * max(1, int((end - start) / bucket + 0.999999))
        for i in self._selected(start, end, status):
            counts[min(len(counts) - 1, int((self.arrival[i] - start) / bucket))] += 1
        return counts

    def lateness(self, quantile: float) -> float:
        """The ``quantile`` of (actual - modelled) latency over answered requests."""
        late = sorted(
            a - m for a, m, s in zip(self.actual, self.model, self.status, strict=True) if s
        )
        if not late:
            return 0.0
        return late[min(len(late) - 1, int(quantile * len(late)))]


@dataclass(frozen=True, slots=True)
class Outage:
    """An outage as the store started it: ``until`` is ``None`` for one without an end."""

    mode: OutageMode
    start: float
    until: float | None


@dataclass
class FlakyStore:
    """A running store process started by :func:`start_flaky_store`.

    Attributes:
        port: the data port on 127.0.0.1 (the same across ``refuse`` outages).
        control_port: the control port (up during outages).
        loop: the store's event loop, ``"uvloop"`` or ``"asyncio"``.
    """

    port: int
    control_port: int
    loop: str
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_template(self) -> str:
        """``GET`` one user: for ``lookups.http(url_template)``."""
        return f"{self.base}/users/{{key}}"

    @property
    def batch_url(self) -> str:
        """The batch endpoint: for ``lookups.http(..., batch_url=...)``."""
        return f"{self.base}/users/batch"

    @property
    def pid(self) -> int:
        assert self._process is not None, "the store is stopped"
        return self._process.pid

    def _control(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}/_control/{path}",
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 400:
                raise
            raise ValueError(json.loads(exc.read())["error"]) from None

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change some knobs (see ``DEFAULTS`` in ``_flaky_store.py``); returns them all.

        Raises:
            ValueError: an unknown knob or a bad value (the store's message names it).
        """
        config: dict[str, Any] = self._control("configure", knobs)
        return config

    def reset(self) -> None:
        """End any outage, restore the default knobs, clear the counters and the log."""
        self._control("reset", {})

    def outage(
        self,
        seconds: float | None,
        *,
        mode: OutageMode = "refuse",
        retry_after: float | None = None,
    ) -> Outage:
        """Start an outage now, for ``seconds`` (``None``: until :meth:`end_outage`).

        Returns once it is on: with ``refuse``, the port no longer accepts connections.

        Args:
            seconds: how long; the store ends it itself (the port reopens, same number).
            mode: ``"refuse"``, ``"reset"`` or ``"503"`` (see ``_flaky_store.py``).
            retry_after: the ``Retry-After`` seconds of the 503 answers (``None``: none).

        Raises:
            ValueError: an outage is already on, or a bad argument.
        """
        body = {"seconds": seconds, "mode": mode, "retry_after": retry_after}
        started = self._control("outage", body)
        return Outage(mode, started["start"], started["until"])

    def end_outage(self) -> None:
        """End the outage now (if one is on); with ``refuse``, once the port listens again."""
        self._control("end_outage", {})

    def wait_serving(self, timeout: float = 10.0) -> float:
        """Wait until no outage is on and the data port accepts connections; return when.

        Raises:
            TimeoutError: still down after ``timeout`` seconds.
            RuntimeError: the store could not reopen its port.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.stats()
            if stats.errors:
                raise RuntimeError("; ".join(stats.errors))
            if stats.outage is None:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=timeout),
                ):
                    return time.monotonic()
            time.sleep(0.01)  # bounded by the deadline; an outage ends on the store's timer
        msg = f"the flaky store on port {self.port} is still down after {timeout:g} s"
        raise TimeoutError(msg)

    def stats(self) -> StoreStats:
        """The counters (see :class:`StoreStats`)."""
        return StoreStats.from_json(self._control("stats"))

    def key_counts(self) -> dict[str, int]:
        """Requests per key since the last reset (a batch counts once for each of its keys)."""
        counts: dict[str, int] = self._control("keys")
        return counts

    def log(self) -> StoreLog:
        """The request log since the last reset (see :class:`StoreLog`)."""
        columns = self._control("log")
        del columns["start"]
        return StoreLog(**columns)

    def stop(self) -> None:
        """Stop the store process (SIGTERM, then SIGKILL if it lingers)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        finally:
            if process.stdout is not None:
                process.stdout.close()


def _ready_line(process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """The JSON line the store prints once both ports listen."""
    assert process.stdout is not None
    fd, line = process.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            msg = f"the flaky store did not start within {timeout:g} s"
            raise RuntimeError(msg)
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                msg = f"the flaky store exited with {process.wait()} before it listened"
                raise RuntimeError(msg)
            line += chunk
    ready: dict[str, Any] = json.loads(line)
    return ready


def start_flaky_store(*, loop: Literal["uvloop", "asyncio"] = "uvloop", **knobs: Any) -> FlakyStore:
    """Start a store in a new process on free loopback ports; the caller must ``stop()`` it.

    Args:
        loop: the store's event loop.
        knobs: initial knobs (see ``DEFAULTS`` in ``_flaky_store.py``).

    Raises:
        RuntimeError: the store did not start (a bad knob, or no answer within 30 s).
    """
    args = [sys.executable, "-m", "tests.integration._flaky_store", "--loop", loop]
    args += ["--knobs", json.dumps(knobs)]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        ready = _ready_line(process, timeout=30)
    except BaseException:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
        raise
    return FlakyStore(ready["port"], ready["control_port"], ready["loop"], _process=process)


@pytest.fixture(scope="session")
def flaky_store_server() -> Iterator[FlakyStore]:
    """One misbehaving store for the session (use ``flaky_store`` for a reset one)."""
    store = start_flaky_store()
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture
def flaky_store(flaky_store_server: FlakyStore) -> Iterator[FlakyStore]:
    """The session's store with default knobs, fresh counters and no outage; reset after."""
    flaky_store_server.reset()
    yield flaky_store_server
    flaky_store_server.reset()
