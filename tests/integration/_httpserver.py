"""A real aiohttp server on loopback serving a ``dim_user`` table, with fault knobs.

Run as a process (``python -m tests.integration._httpserver --port P [--rows N]
[--token T]``); :func:`start_http_server` does that and waits for the port. Endpoints:

* ``GET /users/{key}``: the row of ``key`` as a JSON object, or 404.
* ``POST /users`` with ``{"key": "<key>"}``: the same, for ``method="POST"``.
* ``POST /users/_batch`` with ``{"keys": [...]}``: ``{"<key>": row or null, ...}``.
* ``GET /portal/users/{key}``: always 200 with an HTML page (``text/html``), as a captive
  portal or a proxy's error page answers; counted in ``requests`` like the others.

With ``--token T`` every one of them wants ``Authorization: Bearer T`` (else 401).

Knobs, for fault tests (``POST /_admin/faults`` replaces them; ``POST /_admin/reset`` clears
them and the counters; ``GET /_admin/stats`` returns the counters):

* ``delay``: ``{key: seconds}``: answer that key late (per-key and batch requests).
* ``fail``: ``{key: [[status, retry_after or null], ...]}``: the next requests of that key
  answer these statuses, one per request, before it is served normally again.
* ``fail_batch``: ``[[status, retry_after or null], ...]``: the same for batch requests.
* ``malformed``: keys answered with a body that is not JSON.
* ``non_object``: keys whose row is a JSON array (per-key and in a batch answer).

The session fixture ``http_server`` runs one server for all tests; a test calls
``http_server.reset()`` first. ``bench/kv.py`` starts its own with the same function.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ._system import free_port, wait_for_port

__all__ = ("HttpServer", "http_server", "start_http_server")

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "Bearer http-tok-P3v8"  # distinctive: tests assert it never shows up in a message


def user_row(i: int) -> dict[str, Any]:
    """The row of ``user_{i}``."""
    return {"user_id": f"user_{i}", "age": 18 + i % 60, "city": f"city_{i % 7}"}


# --------------------------------------------------------------------------- the server


class _Dimension:
    """The table, the knobs and the counters of one server process."""

    def __init__(self, rows: int, token: str | None) -> None:
        self.rows = {f"user_{i}": user_row(i) for i in range(rows)}
        self.token = token
        self.reset()

    def reset(self) -> None:
        self.delay: dict[str, float] = {}
        self.fail: dict[str, deque[tuple[int, str | None]]] = {}
        self.fail_batch: deque[tuple[int, str | None]] = deque()
        self.malformed: set[str] = set()
        self.non_object: set[str] = set()
        self.requests: Counter[str] = Counter()
        self.batch_sizes: list[int] = []
        self.unauthorized = 0

    def configure(self, faults: dict[str, Any]) -> None:
        self.delay = {str(k): float(v) for k, v in faults.get("delay", {}).items()}
        self.fail = {
            str(k): deque((int(s), None if r is None else str(r)) for s, r in v)
            for k, v in faults.get("fail", {}).items()
        }
        self.fail_batch = deque(
            (int(s), None if r is None else str(r)) for s, r in faults.get("fail_batch", [])
        )
        self.malformed = {str(k) for k in faults.get("malformed", [])}
        self.non_object = {str(k) for k in faults.get("non_object", [])}

    def authorized(self, request: web.Request) -> bool:
        if self.token is None or request.headers.get("Authorization") == self.token:
            return True
        self.unauthorized += 1
        return False

    def row(self, key: str) -> Any:
        if key in self.non_object:
            return [1, 2, 3]
        return self.rows.get(key)


def _failure(status: int, retry_after: str | None) -> web.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return web.json_response({"error": f"injected {status}"}, status=status, headers=headers)


async def _one(dim: _Dimension, request: web.Request, key: str) -> web.Response:
    if not dim.authorized(request):
        return web.json_response({"error": "unauthorized"}, status=401)
    dim.requests[key] += 1
    if key in dim.delay:
        await asyncio.sleep(dim.delay[key])
    pending = dim.fail.get(key)
    if pending:
        return _failure(*pending.popleft())
    if key in dim.malformed:
        return web.Response(text='{"age": 3', content_type="application/json")
    row = dim.row(key)
    if row is None:
        return web.json_response({"error": "no such user"}, status=404)
    return web.json_response(row)


_PORTAL = "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Sign in</body></html>"


def make_app(rows: int, token: str | None) -> web.Application:
    """The aiohttp application (also usable in-process)."""
    dim = _Dimension(rows, token)
    app = web.Application()

    async def get_user(request: web.Request) -> web.Response:
        return await _one(dim, request, request.match_info["key"])

    async def portal(request: web.Request) -> web.Response:
        dim.requests[request.match_info["key"]] += 1
        return web.Response(text=_PORTAL, content_type="text/html")

    async def post_user(request: web.Request) -> web.Response:
        body = await request.json()
        return await _one(dim, request, str(body["key"]))

    async def batch(request: web.Request) -> web.Response:
        if not dim.authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        keys = [str(k) for k in (await request.json())["keys"]]
        dim.batch_sizes.append(len(keys))
        delay = max((dim.delay.get(k, 0.0) for k in keys), default=0.0)
        if delay:
            await asyncio.sleep(delay)
        if dim.fail_batch:
            return _failure(*dim.fail_batch.popleft())
        if any(k in dim.malformed for k in keys):
            return web.Response(text="{oops", content_type="application/json")
        return web.json_response({k: dim.row(k) for k in keys})

    async def faults(request: web.Request) -> web.Response:
        dim.configure(await request.json())
        return web.json_response({"ok": True})

    async def reset(request: web.Request) -> web.Response:
        dim.reset()
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": dict(dim.requests),
                "batch_sizes": dim.batch_sizes,
                "unauthorized": dim.unauthorized,
            }
        )

    app.router.add_post("/users/_batch", batch)
    app.router.add_get("/users/{key}", get_user)
    app.router.add_get("/portal/users/{key}", portal)
    app.router.add_post("/users", post_user)
    app.router.add_post("/_admin/faults", faults)
    app.router.add_post("/_admin/reset", reset)
    app.router.add_get("/_admin/stats", stats)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a dim_user HTTP service for tests")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--token", default=None, help="require Authorization: <token>")
    args = parser.parse_args(argv)
    web.run_app(
        make_app(args.rows, args.token),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        handle_signals=True,
        shutdown_timeout=0.5,  # do not wait for the knobs' long delays on SIGTERM
    )


# --------------------------------------------------------------------------- the handle


@dataclass
class HttpServer:
    """A running server process started by :func:`start_http_server`."""

    port: int
    rows: int
    token: str | None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_template(self) -> str:
        return f"{self.base}/users/{{key}}"

    @property
    def portal_template(self) -> str:
        """A per-key URL answering every key 200 with an HTML page."""
        return f"{self.base}/portal/users/{{key}}"

    @property
    def batch_url(self) -> str:
        return f"{self.base}/users/_batch"

    def _admin(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def faults(self, **knobs: Any) -> None:
        """Replace the fault knobs (see the module doc)."""
        self._admin("/_admin/faults", knobs)

    def reset(self) -> None:
        """Clear the knobs and the counters."""
        self._admin("/_admin/reset", {})

    def stats(self) -> dict[str, Any]:
        """``requests`` per key, ``batch_sizes``, ``unauthorized``."""
        return dict(self._admin("/_admin/stats"))

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def start_http_server(rows: int = 1000, token: str | None = None) -> HttpServer:
    """Start the server in a new process on a free loopback port and wait until it listens."""
    port = free_port()
    args = [sys.executable, "-m", "tests.integration._httpserver", "--port", str(port)]
    args += ["--rows", str(rows)]
    if token is not None:
        args += ["--token", token]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL)
    server = HttpServer(port=port, rows=rows, token=token, _process=process)
    try:
        wait_for_port(port, timeout=30, process=process)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def http_server() -> Iterator[HttpServer]:
    """One dim_user service (1000 users, no token) for the session."""
    server = start_http_server(rows=1000)
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
