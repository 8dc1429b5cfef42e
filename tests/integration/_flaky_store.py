"""A real store that misbehaves: an aiohttp ``dim_user`` service with load, limits and outages.

Run as a process of its own (``python -m tests.integration._flaky_store``), so that its
latency model is not distorted by the CPU the client uses; :func:`start_flaky_store` does
that and returns a :class:`~tests.integration._flaky_client.FlakyStore` handle that drives it
over HTTP. Two ports on 127.0.0.1:

* the **data port**, what the code under test calls:

  - ``GET /users/{key}``: ``{"user_id": key, "age": ...}`` for ``user_0`` ..
    ``user_{keys-1}``, else 404;
  - ``POST /users/batch`` with ``{"keys": [...]}``: ``{"<key>": row or null, ...}``, the
    batch endpoint ``asyncwait.lookups.http(batch_url=...)`` calls;

* the **control port** (``/_control/...``), which stays up during an outage: ``configure``,
  ``reset``, ``outage``, ``end_outage``, ``stats``, ``keys``, ``log``.

Behaviour of the data port, in the order a request meets it:

1. **Outage** (``outage(seconds, mode)``, ended by its timer or ``end_outage``):
   ``refuse`` closes the listening socket and drops every open connection (clients get
   "connection refused"; the port is reopened when the outage ends); ``reset`` keeps
   listening but drops each request's connection without an answer (what ``refuse`` does,
   in a form the store can count); ``503`` answers 503, with ``Retry-After`` if asked.
2. **Rate limit** (``rate_limit`` requests/s, a token bucket of ``burst`` tokens, default a
   tenth of a second's worth): above it, 429 at once with ``Retry-After: retry_after``.
3. **Latency**: a request that finds ``n`` requests in flight on arrival (itself included)
   is answered after ``latency + step * max(0, n - knee) + per_key * keys`` seconds.
4. **Answer**: the row(s), or with ``html`` a 200 with an HTML page (a decode failure).

Every request is counted (by status, per key, in flight) and logged (arrival time, ``n``,
status, modelled and actual latency); times are ``time.monotonic()`` of this machine, the
same clock as the test process's ``time.monotonic()``.

Overhead, measured on the 2-core test machine with ``python -m bench._flaky`` (uvloop, no
latency, keep-alive client in another process; see that module): the store spends about
0.15-0.2 ms of CPU per request, so it serves ~5,000-6,000 requests/s from one core; at
2,000 requests/s with 5 ms latency the median answer is late by < 1 ms and the 99th
percentile by a few ms (timer granularity and scheduling on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ("DEFAULTS", "user_row")

# The knobs and their values after a reset: a healthy, instant store of 1000 users.
DEFAULTS: dict[str, Any] = {
    "keys": 1000,  # users user_0 .. user_{keys-1}; others are 404
    "latency": 0.0,  # seconds for every answer
    "knee": None,  # in-flight requests served at `latency` (None: no knee)
    "step": 0.0,  # seconds added per in-flight request beyond the knee
    "per_key": 0.0,  # seconds added per key of a batch request
    "rate_limit": None,  # requests/s answered before 429 (None: no limit)
    "burst": None,  # token bucket size (None: rate_limit / 10, at least 1)
    "retry_after": 1.0,  # Retry-After seconds of a 429 (None: no header)
    "html": False,  # answer 200 with an HTML page instead of JSON
}
MODES = ("refuse", "reset", "503")
LOG_LIMIT = 2_000_000  # log entries kept per reset (~60 MB); counters go on past it
_KEY = re.compile(r"user_(0|[1-9][0-9]*)")
HTML_PAGE = "<!doctype html><html><body><h1>502 Bad Gateway</h1></body></html>"


def user_row(i: int) -> dict[str, Any]:
    """The row of ``user_{i}``."""
    return {"user_id": f"user_{i}", "age": 18 + i % 60}


class _BadKnob(ValueError):
    pass


def _check(knobs: dict[str, Any]) -> dict[str, Any]:
    """``knobs`` validated and normalised, or :class:`_BadKnob` naming the first bad one."""
    out: dict[str, Any] = {}
    for name, value in knobs.items():
        if name not in DEFAULTS:
            msg = f"unknown knob {name!r}; the knobs are {', '.join(DEFAULTS)}"
            raise _BadKnob(msg)
        optional = DEFAULTS[name] is None or name == "retry_after"
        if value is None and optional:
            out[name] = None
        elif name == "html":
            if not isinstance(value, bool):
                msg = f"html must be true or false, got {value!r}"
                raise _BadKnob(msg)
            out[name] = value
        elif name in ("keys", "knee"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                msg = f"{name} must be an integer >= 0, got {value!r}"
                raise _BadKnob(msg)
            out[name] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                msg = f"{name} must be a number >= 0, got {value!r}"
                raise _BadKnob(msg)
            if name in ("rate_limit", "burst") and value == 0:
                msg = f"{name} must be > 0 (or null for none), got {value!r}"
                raise _BadKnob(msg)
            out[name] = float(value)
    return out


@dataclass
class _Outage:
    mode: str
    start: float
    until: float | None
    retry_after: float | None
    timer: asyncio.TimerHandle | None = None


class _Store:
    """The knobs, the counters and the log of one store process."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None
        self.lock = asyncio.Lock()  # control operations one at a time
        self.tasks: set[asyncio.Task[None]] = set()  # outage timers' reopen tasks
        self.outage: _Outage | None = None
        self.reset()

    def reset(self) -> None:
        self.config = dict(DEFAULTS)
        self.tokens = 0.0
        self.refilled = time.monotonic()
        self.since = self.refilled
        self.received = self.in_flight = self.max_in_flight = 0
        self.during_outage = self.aborted = self.batches = self.batch_keys = self.html = 0
        self.statuses: Counter[int] = Counter()
        self.per_key: Counter[str] = Counter()
        self.outages: list[list[Any]] = []
        self.errors: list[str] = []
        self.log_dropped = 0
        self.log_arrival = array("d")
        self.log_n = array("i")
        self.log_status = array("h")
        self.log_model = array("d")
        self.log_actual = array("d")
        self.log_key: list[str] = []
        self.log_keys = array("i")

    def configure(self, knobs: dict[str, Any]) -> None:
        self.config.update(_check(knobs))
        if "rate_limit" in knobs or "burst" in knobs:
            self.tokens, self.refilled = self._burst(), time.monotonic()

    def _burst(self) -> float:
        rate, burst = self.config["rate_limit"], self.config["burst"]
        if rate is None:
            return 0.0
        return float(burst) if burst is not None else max(1.0, rate / 10)

    def take_token(self, now: float) -> bool:
        rate = self.config["rate_limit"]
        if rate is None:
            return True
        self.tokens = min(self._burst(), self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def model(self, n: int, keys: int) -> float:
        c = self.config
        extra = 0 if c["knee"] is None else max(0, n - c["knee"])
        return float(c["latency"] + c["step"] * extra + c["per_key"] * keys)

    def log(self, arrival: float, n: int, status: int, model: float, key: str, keys: int) -> None:
        self.statuses[status] += 1
        if len(self.log_arrival) >= LOG_LIMIT:
            self.log_dropped += 1
            return
        self.log_arrival.append(arrival)
        self.log_n.append(n)
        self.log_status.append(status)
        self.log_model.append(model)
        self.log_actual.append(time.monotonic() - arrival)
        self.log_key.append(key)
        self.log_keys.append(keys)

    # ------------------------------------------------------------------ the data port

    async def serve(self, request: web.Request, keys: list[str], batch: bool) -> web.StreamResponse:
        arrival = time.monotonic()
        self.received += 1
        n = self.in_flight + 1
        key = "" if batch else keys[0]
        self.per_key.update(keys)
        if batch:
            self.batches += 1
            self.batch_keys += len(keys)
        outage = self.outage
        # A `refuse` outage lets nobody in; one that arrives as its port reopens is served.
        if outage is not None and outage.mode != "refuse":
            self.during_outage += 1
            if outage.mode == "reset":
                self.log(arrival, n, 0, 0.0, key, len(keys))
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=503)  # never sent: the connection is gone
            self.log(arrival, n, 503, 0.0, key, len(keys))
            return _error(503, "outage", outage.retry_after)
        if not self.take_token(arrival):
            self.log(arrival, n, 429, 0.0, key, len(keys))
            return _error(429, "rate limited", self.config["retry_after"])
        self.in_flight = n
        self.max_in_flight = max(self.max_in_flight, n)
        model = self.model(n, len(keys) if batch else 0)
        status = 200
        try:
            if model > 0:
                await asyncio.sleep(model)
            if self.config["html"]:
                self.html += 1
                response = web.Response(text=HTML_PAGE, content_type="text/html")
            elif batch:
                response = web.json_response({k: self.row(k) for k in keys})
            else:
                row = self.row(key)
                if row is None:
                    status = 404
                    response = web.json_response({"error": "no such user"}, status=404)
                else:
                    response = web.json_response(row)
            if request.transport is None or request.transport.is_closing():
                status = 0  # dropped by a `refuse` outage while it waited: never answered
            return response
        finally:
            self.in_flight -= 1
            self.log(arrival, n, status, model, key, len(keys))

    def row(self, key: str) -> dict[str, Any] | None:
        match = _KEY.fullmatch(key)
        if match is None or int(match[1]) >= self.config["keys"]:
            return None
        return user_row(int(match[1]))

    # ------------------------------------------------------------------ outages

    async def open_port(self) -> None:
        assert self.runner is not None
        deadline = time.monotonic() + 5.0
        while True:
            site = web.TCPSite(self.runner, self.host, self.port, backlog=4096)
            try:
                await site.start()
            except OSError:  # the old socket's port is not free yet: rare, and brief
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            self.site = site
            self.port = int(self.runner.addresses[0][1])  # the one we asked for, or a free one
            return

    async def start_outage(
        self, seconds: float | None, mode: str, retry_after: float | None
    ) -> _Outage:
        if self.outage is not None:
            msg = f"an outage ({self.outage.mode}) is already on; end it first"
            raise _BadKnob(msg)
        now = time.monotonic()
        outage = _Outage(mode, now, None if seconds is None else now + seconds, retry_after)
        self.outage = outage
        self.outages.append([now, None, mode])
        if mode == "refuse":
            assert self.site is not None
            assert self.runner is not None
            await self.site.stop()
            self.site = None
            for handler in self.runner.server.connections if self.runner.server else ():
                if handler.transport is not None:
                    self.aborted += 1
                    handler.transport.abort()
        if seconds is not None:
            outage.timer = asyncio.get_running_loop().call_later(seconds, self._timer, outage)
        return outage

    def _timer(self, outage: _Outage) -> None:
        task = asyncio.get_running_loop().create_task(self._end_by_timer(outage))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _end_by_timer(self, outage: _Outage) -> None:
        # uvloop's timers may fire up to a millisecond early: never end before `until`.
        assert outage.until is not None
        left = outage.until - time.monotonic()
        if left > 0:
            await asyncio.sleep(left + 0.001)  # one timer tick more than is left
        async with self.lock:
            if self.outage is outage:
                try:
                    await self.end_outage()
                except OSError as exc:
                    self.errors.append(f"could not reopen port {self.port}: {exc}")

    async def end_outage(self) -> None:
        outage = self.outage
        if outage is None:
            return
        if outage.timer is not None:
            outage.timer.cancel()
        if outage.mode == "refuse":
            await self.open_port()  # the outage stays on until the port listens again
        self.outage = None
        for record in self.outages:
            if record[1] is None:
                record[1] = time.monotonic()

    # ------------------------------------------------------------------ the control port

    def stats(self) -> dict[str, Any]:
        return {
            "now": time.monotonic(),
            "since": self.since,
            "received": self.received,
            "statuses": dict(self.statuses),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "during_outage": self.during_outage,
            "aborted": self.aborted,
            "batches": self.batches,
            "batch_keys": self.batch_keys,
            "html": self.html,
            "outages": self.outages,
            "outage": None if self.outage is None else self.outage.mode,
            "config": self.config,
            "cpu": time.process_time(),
            "log_dropped": self.log_dropped,
            "errors": self.errors,
        }

    def log_columns(self, start: int) -> dict[str, Any]:
        return {
            "start": start,
            "arrival": self.log_arrival[start:].tolist(),
            "n": self.log_n[start:].tolist(),
            "status": self.log_status[start:].tolist(),
            "model": self.log_model[start:].tolist(),
            "actual": self.log_actual[start:].tolist(),
            "key": self.log_key[start:],
            "keys": self.log_keys[start:].tolist(),
        }


def _error(status: int, reason: str, retry_after: float | None) -> web.Response:
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    return web.json_response({"error": reason}, status=status, headers=headers)


def _data_app(store: _Store) -> web.Application:
    async def get_user(request: web.Request) -> web.StreamResponse:
        return await store.serve(request, [request.match_info["key"]], batch=False)

    async def batch(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            keys = [str(k) for k in body["keys"]]
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f'expected {{"keys": [...]}}: {exc}', None)
        return await store.serve(request, keys, batch=True)

    app = web.Application()
    app.router.add_post("/users/batch", batch)
    app.router.add_get("/users/{key}", get_user)
    return app


def _control_app(store: _Store) -> web.Application:
    def bad(exc: Exception) -> web.Response:
        return web.json_response({"error": str(exc)}, status=400)

    async def configure(request: web.Request) -> web.Response:
        async with store.lock:
            try:
                store.configure(await request.json())
            except _BadKnob as exc:
                return bad(exc)
            return web.json_response(store.config)

    async def reset(request: web.Request) -> web.Response:
        async with store.lock:
            await store.end_outage()
            store.reset()
            return web.json_response({"since": store.since})

    async def outage(request: web.Request) -> web.Response:
        body = await request.json()
        seconds, mode, retry_after = body.get("seconds"), body.get("mode"), body.get("retry_after")
        try:
            if mode not in MODES:
                msg = f"mode must be one of {', '.join(MODES)}, got {mode!r}"
                raise _BadKnob(msg)
            for name, value in (("seconds", seconds), ("retry_after", retry_after)):
                if value is not None and (not isinstance(value, int | float) or value < 0):
                    msg = f"{name} must be a number >= 0 or null, got {value!r}"
                    raise _BadKnob(msg)
            async with store.lock:
                started = await store.start_outage(seconds, mode, retry_after)
        except _BadKnob as exc:
            return bad(exc)
        return web.json_response({"start": started.start, "until": started.until})

    async def end_outage(request: web.Request) -> web.Response:
        async with store.lock:
            await store.end_outage()
        return web.json_response({"end": time.monotonic()})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(store.stats())

    async def keys(request: web.Request) -> web.Response:
        return web.json_response(dict(store.per_key))

    async def log(request: web.Request) -> web.Response:
        return web.json_response(store.log_columns(int(request.query.get("start", "0"))))

    app = web.Application()
    app.router.add_post("/_control/configure", configure)
    app.router.add_post("/_control/reset", reset)
    app.router.add_post("/_control/outage", outage)
    app.router.add_post("/_control/end_outage", end_outage)
    app.router.add_get("/_control/stats", stats)
    app.router.add_get("/_control/keys", keys)
    app.router.add_get("/_control/log", log)
    return app


async def _serve(host: str, port: int, knobs: dict[str, Any], loop_name: str) -> None:
    store = _Store(host)
    store.port = port
    store.configure(knobs)
    # handler_cancellation off (aiohttp's default): a request whose client gave up still
    # loads the store until its latency is over, as abandoned work does in a real one.
    store.runner = web.AppRunner(_data_app(store), access_log=None)
    control = web.AppRunner(_control_app(store), access_log=None)
    await store.runner.setup()
    await control.setup()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await store.open_port()
        control_site = web.TCPSite(control, host, 0)
        await control_site.start()
        control_port = int(control.addresses[0][1])
        ready = {"port": store.port, "control_port": control_port, "loop": loop_name}
        print(json.dumps(ready), flush=True)  # the parent waits for this line
        await stopped.wait()
    finally:
        for task in list(store.tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await control.cleanup()
        await store.runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Run the store until SIGTERM; print its ports as one JSON line once it listens."""
    parser = argparse.ArgumentParser(description="a dim_user HTTP store that misbehaves")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="data port (0: a free one)")
    parser.add_argument("--knobs", default="{}", help="initial knobs, a JSON object")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args(argv)
    knobs = _check(json.loads(args.knobs))
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(_serve(args.host, args.port, knobs, args.loop))
    else:
        asyncio.run(_serve(args.host, args.port, knobs, args.loop))


if __name__ == "__main__":
    main(sys.argv[1:])
