"""HTTP lookup table over aiohttp: one JSON object per key from a REST endpoint.

The row for ``key`` is the JSON object the service answers at ``url_template`` with
``{key}`` replaced by the URL-quoted ``str(key)``: **200** with a JSON object is the row,
**404** is a miss, **429 and 5xx** raise :class:`HttpStatusError` with ``retryable`` set
(a retry strategy matches it with :meth:`HttpStatusError.is_retryable`), any other status
raises it with ``retryable`` unset. The class lives in :mod:`asyncwait.errors`, with every
other exception.

``Retry-After``: retry strategies are pure functions of the attempt number, so they cannot
wait for as long as a server asks. The table honours the header itself: on 429/503 (any
retryable status) carrying ``Retry-After``, it waits that long on the loop clock and asks
again, as long as the waits of one call add up to at most ``max_retry_after`` seconds
(and number at most 5);
past that it raises :class:`HttpStatusError` with ``retry_after`` set and the operator's
retry strategy (and deadline) take over. The operator's timeout cancels such a wait.

All requests share one :class:`aiohttp.ClientSession` whose connector holds at most
``pool_size`` connections; requests beyond that wait for one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from .._checks import check_int, check_seconds
from ..errors import BadInputError, ConfigError, HttpStatusError, _short_repr
from ._base import Row, TableState, closed_error, import_driver
from ._secrets import MASK, Secrets
from ._sql import Pooled, PoolSize, key_chunks

if TYPE_CHECKING:
    import aiohttp

__all__ = ("HttpStatistics", "HttpTable", "http")

_METHODS: Final = ("GET", "POST")
# Connections unless pool_size says otherwise: the operator's default capacity.
_DEFAULT_POOL: Final = 100
# Retry-After waits per call at most, whatever their total (a server answering
# "Retry-After: 0" forever must not keep a call looping).
_MAX_WAITS: Final = 5
# Keys per request to the batch endpoint, whatever batch the caller sends.
_BATCH_CHUNK: Final = 1000


@final
@dataclass(frozen=True, slots=True)
class HttpStatistics:
    """A snapshot of an :class:`HttpTable`'s counters.

    Attributes:
        requests: HTTP requests sent (per key, and to the batch endpoint).
        batch_requests: those of them sent to the batch endpoint.
        keys: keys asked for by those requests.
        in_flight: requests sent and not answered yet.
        retry_after_waits: times the table waited because of a ``Retry-After`` header.
        retry_after_seconds: the seconds those headers asked for, added up.
        pool_size: the most connections the table opens.
    """

    requests: int
    batch_requests: int
    keys: int
    in_flight: int
    retry_after_waits: int
    retry_after_seconds: float
    pool_size: int


@final
class HttpTable(Pooled):
    """A lookup table served by an HTTP service, one request per key; build it with :func:`http`.

    See :class:`~asyncwait.lookups.LookupTable` for the contract and :func:`http` for the
    protocol. Errors: an unreachable service raises :class:`ConnectionError` naming the
    table and ``host:port``; no answer within ``request_timeout`` raises
    :class:`TimeoutError`; an unexpected status raises :class:`HttpStatusError`; a body that
    is not the expected JSON raises :class:`~asyncwait.BadInputError` naming the key and the
    URL. ``scan`` is not supported (a full cache raises :class:`~asyncwait.ConfigError`).
    """

    def __init__(
        self,
        url_template: str,
        *,
        method: str,
        headers: Mapping[str, str],
        batch_url: str | None,
        pool_size: int | None,
        authorization_env: str | None,
        request_timeout: float | None,
        connect_timeout: float,
        max_retry_after: float,
    ) -> None:
        parts = urlsplit(url_template)
        self._template, self._auth = _without_userinfo(parts)
        self._shown_template = _shown(parts)
        self._where = _host_port(parts)
        self._host = parts.hostname or "localhost"
        self._port = int(self._where.rsplit(":", 1)[1])
        self.name = self._shown_template + ("" if method == "GET" else f" ({method})")
        self._method = method
        self._headers = dict(headers)
        if batch_url is None:
            self._batch_url: str | None = None
            self._shown_batch = ""
            self._secrets = Secrets.in_url(parts)
        else:
            batch_parts = urlsplit(batch_url)
            self._batch_url = _without_userinfo(batch_parts)[0]
            self._shown_batch = _shown(batch_parts)
            self._secrets = Secrets.in_url(parts, batch_parts.password)
        self._size = PoolSize(pool_size, default=_DEFAULT_POOL, most=_DEFAULT_POOL)
        self._authorization_env = authorization_env
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._max_retry_after = max_retry_after
        self._state = TableState.NEW
        self._session: aiohttp.ClientSession | None = None
        self._driver: Any = None  # the aiohttp module, once open
        self._requests = self._batch_requests = self._keys = self._in_flight = 0
        self._waits = 0
        self._waited = 0.0

    def expect_queries(self, queries: int) -> None:
        """Size the pool for ``queries`` concurrent requests to the batch endpoint.

        :class:`~asyncwait.join.LookupJoin` calls this before ``open()`` with its
        ``max_queries``. Without a ``batch_url`` a batch becomes one request per key, so
        the default pool (100) stays; an explicit ``pool_size`` always wins.
        """
        if self._batch_url is not None:
            super().expect_queries(queries)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._state is TableState.OPEN:
            return
        aiohttp = import_driver("aiohttp", connector="http")
        headers = dict(self._headers)
        if self._authorization_env is not None:
            token = os.environ.get(self._authorization_env)
            if not token:
                msg = (
                    f"lookup {self.name}: the environment variable "
                    f"{self._authorization_env} (the Authorization header) is not set"
                )
                raise ConfigError(msg)
            headers["Authorization"] = token
        elif self._auth is not None:
            user, password = self._auth
            basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {basic}"
        await self._probe()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._size.value),
            timeout=aiohttp.ClientTimeout(
                total=self._request_timeout, sock_connect=self._connect_timeout
            ),
            headers=headers,
            raise_for_status=False,
        )
        self._driver = aiohttp
        self._state = TableState.OPEN

    async def _probe(self) -> None:
        """Fail early, naming ``host:port``, when nothing accepts connections there."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, writer = await asyncio.open_connection(self._host, self._port)
        except (OSError, TimeoutError) as exc:
            msg = (
                f"lookup {self.name}: cannot connect to {self._where}: "
                f"{exc.strerror if isinstance(exc, OSError) and exc.strerror else exc!r}"
            )
            raise ConnectionError(msg) from exc
        writer.close()
        # The probe's connection is ours alone: how it ends does not matter.
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def close(self) -> None:
        session, self._session = self._session, None
        self._state = TableState.CLOSED
        if session is not None:
            await session.close()

    # ------------------------------------------------------------------ lookups

    def _url(self, key: Hashable) -> tuple[str, str]:
        """The request URL for ``key``, and the same URL as errors show it."""
        quoted = quote(str(key), safe="")
        return (
            self._template.replace("{key}", quoted),
            self._shown_template.replace("{key}", quoted),
        )

    async def get(self, key: Hashable) -> Row | None:
        url, shown = self._url(key)
        body = {"key": str(key)} if self._method == "POST" else None
        what = f"key {_short_repr(key)}"
        data = await self._exchange(self._method, url, shown, body, what, keys=1, miss_ok=True)
        if data is None:
            return None
        if not isinstance(data, dict):
            msg = (
                f"lookup {self.name}: {self._method} {shown} answered JSON "
                f"{type(data).__name__} for {what}, not an object: {_short_repr(data)}"
            )
            raise BadInputError(msg, source=self.name)
        return data

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        if self._batch_url is None:
            return await self._get_each(list(dict.fromkeys(keys)))
        result, chunks = key_chunks(keys, _BATCH_CHUNK)
        for chunk in chunks:
            result.update(await self._get_batch(chunk))
        return result

    async def _get_each(self, keys: list[Hashable]) -> dict[Hashable, Row | None]:
        # Concurrent gets; the connector's limit bounds how many are on the wire. A bad
        # value is reported as BadInputError, which lets the join isolate that key.
        outcomes = await asyncio.gather(*(self.get(k) for k in keys), return_exceptions=True)
        result: dict[Hashable, Row | None] = {}
        failure: BaseException | None = None
        for key, outcome in zip(keys, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if failure is None or (
                    isinstance(outcome, BadInputError) and not isinstance(failure, BadInputError)
                ):
                    failure = outcome
                continue
            result[key] = outcome
        if failure is not None:
            raise failure
        return result

    async def _get_batch(self, keys: list[Hashable]) -> dict[Hashable, Row | None]:
        assert self._batch_url is not None  # checked by get_many
        wire = [str(k) for k in keys]
        what = f"a batch of {len(keys)} keys"
        data = await self._exchange(
            "POST",
            self._batch_url,
            self._shown_batch,
            {"keys": wire},
            what,
            keys=len(keys),
            miss_ok=False,
        )
        where = f"batch endpoint POST {self._shown_batch}"
        if not isinstance(data, dict):
            msg = (
                f"lookup {self.name}: {where} answered {_short_repr(data)} for {what}; "
                'expected a JSON object {"<key>": row or null}'
            )
            raise BadInputError(msg, source=self.name)
        result: dict[Hashable, Row | None] = {}
        for key, text in zip(keys, wire, strict=True):
            if text not in data:
                msg = f"lookup {self.name}: {where} left out key {text!r} from its answer"
                raise BadInputError(msg, source=self.name)
            row = data[text]
            if row is not None and not isinstance(row, dict):
                msg = (
                    f"lookup {self.name}: {where} answered {_short_repr(row)} for key "
                    f"{text!r}; expected a JSON object or null"
                )
                raise BadInputError(msg, source=self.name)
            result[key] = row
        return result

    async def _exchange(
        self, method: str, url: str, shown: str, body: Any, what: str, *, keys: int, miss_ok: bool
    ) -> Any:
        """Send one request and return its JSON, waiting out Retry-After.

        Returns ``None`` for a 404 when ``miss_ok`` (a per-key request: the key has no row).
        """
        waited = 0.0
        waits = 0
        while True:
            status, reason, raw, retry_after = await self._send(method, url, shown, body, keys)
            if status == 200:
                try:
                    return json.loads(raw)
                except ValueError as exc:
                    msg = (
                        f"lookup {self.name}: {method} {shown} answered malformed JSON for "
                        f"{what} ({exc}): {_short_repr(raw[:200])}"
                    )
                    raise BadInputError(msg, source=self.name) from exc
            if status == 404 and miss_ok:
                return None
            error = HttpStatusError(
                f"lookup {self.name}: {method} {shown} answered {status} {reason} for {what}"
                + ("" if retry_after is None else f" (Retry-After: {retry_after:g} s)")
                + (f": {_short_repr(raw[:200])}" if raw and not 200 <= status < 300 else ""),
                status=status,
                url=shown,
                retry_after=retry_after,
            )
            if (
                error.retryable
                and retry_after is not None
                and waited + retry_after <= self._max_retry_after
                and waits < _MAX_WAITS
            ):
                waits += 1
                waited += retry_after
                self._waits += 1
                self._waited += retry_after
                await asyncio.sleep(retry_after)
                continue
            raise error

    async def _send(
        self, method: str, url: str, shown: str, body: Any, keys: int
    ) -> tuple[int, str, bytes, float | None]:
        session = self._session
        if session is None:
            raise closed_error(self.name, self._state)
        aiohttp = self._driver
        self._requests += 1
        self._batch_requests += url == self._batch_url
        self._keys += keys
        self._in_flight += 1
        try:
            async with session.request(method, url, json=body) as response:
                raw = await response.read()
                retry_after = _retry_after(response.headers.get("Retry-After"))
                return response.status, response.reason or "", raw, retry_after
        except aiohttp.ClientConnectorError as exc:
            msg = (
                f"lookup {self.name}: cannot connect to {exc.host}:{exc.port} for "
                f"{method} {shown}: {exc.os_error.strerror or exc.os_error}"
            )
            raise ConnectionError(msg) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # The request URL has no credentials, but its query may hold a token: show the
            # URL as the name does, and mask the passwords in case the driver echoes them.
            detail = self._secrets.scrub((str(exc) or type(exc).__name__).replace(url, shown))
            msg = (
                f"lookup {self.name}: the connection to {self._where} broke during "
                f"{method} {shown}: {detail}"
            )
            raise ConnectionError(msg) from exc
        except TimeoutError as exc:  # aiohttp's ServerTimeoutError is one, too
            msg = (
                f"lookup {self.name}: {method} {shown} got no answer within "
                f"{self._request_timeout:g} s"
            )
            raise TimeoutError(msg) from exc
        finally:
            self._in_flight -= 1

    def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        msg = (
            f"lookup {self.name}: an HTTP lookup cannot list its whole table, so a full "
            "cache (cache.full) cannot load it; use cache.lru(...) instead"
        )
        raise ConfigError(msg)

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> HttpStatistics:
        """Return the current counters."""
        return HttpStatistics(
            requests=self._requests,
            batch_requests=self._batch_requests,
            keys=self._keys,
            in_flight=self._in_flight,
            retry_after_waits=self._waits,
            retry_after_seconds=self._waited,
            pool_size=self._size.value,
        )

    def __repr__(self) -> str:
        batch = f" batch={self._shown_batch!r}" if self._batch_url else ""
        return (
            f"<HttpTable {self.name!r}{batch} {self._state.value} pool={self._size.value} "
            f"requests={self._requests} in-flight={self._in_flight}>"
        )


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None  # unparseable: as if absent
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        # An HTTP date is wall-clock time by definition; the wait itself runs on the loop.
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN: as if absent


def _host_port(parts: SplitResult) -> str:
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return f"{parts.hostname or 'localhost'}:{port}"


def _without_userinfo(parts: SplitResult) -> tuple[str, tuple[str, str] | None]:
    """The URL without ``user:password@``, and those credentials (for basic auth)."""
    netloc = parts.netloc.rpartition("@")[2]
    url = urlunsplit(parts._replace(netloc=netloc))
    if parts.username is None:
        return url, None
    return url, (unquote(parts.username), unquote(parts.password or ""))


def _shown(parts: SplitResult) -> str:
    """The URL as names and errors show it: no credentials, query values masked.

    A query value holding ``{key}`` stays (it is the lookup key); every other value may
    be a token, so it is masked.
    """
    netloc = parts.netloc.rpartition("@")[2]
    query = urlencode(
        [
            (name, value if "{key}" in value else MASK)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="{}*",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))


def _check_url(field: str, url: object) -> SplitResult:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        shown = _shown(parts) if parts is not None else repr(url)
        msg = f"lookups.http: {field} must be an http:// or https:// URL, got {shown!r}"
        raise ConfigError(msg)
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError as exc:
        msg = f"lookups.http: {field} has a bad port: {_shown(parts)!r} ({exc})"
        raise ConfigError(msg) from None
    return parts


def http(
    url_template: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    batch_url: str | None = None,
    pool_size: int | None = None,
    authorization_env: str | None = None,
    request_timeout: float | None = 30.0,
    connect_timeout: float = 5.0,
    max_retry_after: float = 5.0,
) -> HttpTable:
    """Return a lookup table whose row for ``key`` an HTTP service answers as a JSON object.

    ``get(key)`` sends ``method`` to ``url_template`` with ``{key}`` replaced by the
    URL-quoted ``str(key)`` (``POST`` also sends the JSON body ``{"key": "<key>"}``):

    * 200 with a JSON object: the row; 200 with anything else:
      :class:`~asyncwait.BadInputError` naming the key and the URL.
    * 404: a miss (``None``).
    * 429 and 5xx: :class:`HttpStatusError` with ``retryable`` set, after waiting out
      ``Retry-After`` (up to ``max_retry_after`` seconds per call, see the module doc).
      Retry it with ``on_exception=HttpStatusError.is_retryable``.
    * any other status: :class:`HttpStatusError` naming the URL and status.

    ``get_many`` sends one ``POST batch_url`` with ``{"keys": ["<key>", ...]}`` (at most
    1000 keys) and expects ``{"<key>": row or null, ...}`` with every key; without a
    ``batch_url`` it sends concurrent gets. Keys travel as ``str(key)``. ``scan`` is not
    supported: use ``cache.lru``, not ``cache.full``. At most ``pool_size`` requests are on
    the wire at once; ``open()`` checks that ``host:port`` accepts connections.

    Credentials: ``https://user:password@host/...`` becomes basic auth,
    ``authorization_env`` names an environment variable holding the whole
    ``Authorization`` header (e.g. ``Bearer abc``), and ``headers`` are sent as given.
    None of them, nor any query value other than the one holding ``{key}``, appears in
    ``name``, errors or ``repr``.

    Args:
        url_template: the per-key URL; must contain ``{key}`` for ``GET``.
        method: ``"GET"`` or ``"POST"``.
        headers: extra request headers.
        batch_url: the batch endpoint, or ``None`` for one request per key.
        pool_size: the most connections (requests in flight). Default 100, the operator's
            default capacity; with a ``batch_url``, sized by the lookup join (its queries
            in flight + 1).
        authorization_env: the environment variable holding the ``Authorization`` header.
        request_timeout: seconds for one whole request, or ``None`` for no limit (the
            operator's timeout still applies).
        connect_timeout: seconds to wait for a TCP connection.
        max_retry_after: the most seconds one call waits for ``Retry-After``; 0 never waits.

    Returns:
        The table (a :class:`~asyncwait.lookups.LookupTable`), not yet open.

    Raises:
        ConfigError: a URL is not http(s) (or a GET template lacks ``{key}``), ``method``
            is not GET/POST, or a size or duration is out of range.

    >>> users = http("http://127.0.0.1:8080/users/{key}?token=s3cret")
    >>> users.name
    'http://127.0.0.1:8080/users/{key}?token=***'
    """
    parts = _check_url("url_template", url_template)
    if method not in _METHODS:
        msg = f"lookups.http: method must be 'GET' or 'POST', got {method!r}"
        raise ConfigError(msg)
    if method == "GET" and "{key}" not in url_template:
        msg = f"lookups.http: url_template must contain '{{key}}' for GET, got {_shown(parts)!r}"
        raise ConfigError(msg)
    if batch_url is not None:
        _check_url("batch_url", batch_url)
    if headers is None:
        headers = {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        msg = "lookups.http: headers must map header names to string values"
        raise ConfigError(msg)
    pool_size = check_int("lookups.http", "pool_size", pool_size, optional=True)
    if authorization_env is not None and (
        not isinstance(authorization_env, str) or not authorization_env
    ):
        msg = f"lookups.http: authorization_env must name a variable, got {authorization_env!r}"
        raise ConfigError(msg)
    request_timeout = check_seconds(
        "lookups.http", "request_timeout", request_timeout, optional=True
    )
    return HttpTable(
        url_template,
        method=method,
        headers=headers,
        batch_url=batch_url,
        pool_size=pool_size,
        authorization_env=authorization_env,
        request_timeout=request_timeout,
        connect_timeout=check_seconds("lookups.http", "connect_timeout", connect_timeout),
        max_retry_after=check_seconds(
            "lookups.http", "max_retry_after", max_retry_after, zero=True
        ),
    )
