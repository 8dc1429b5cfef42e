"""HTTP lookup table over aiohttp: one JSON object per key from a REST endpoint.

The row for ``key`` is the JSON object the service answers at ``url_template`` with
``{key}`` replaced by the URL-quoted ``str(key)``: **200** with a JSON object is the row,
**404** is a miss, **429 and 5xx** raise :class:`HttpStatusError` with ``retryable`` set
(a retry strategy matches it with :meth:`HttpStatusError.is_retryable`), any other status
raises it with ``retryable`` unset. A 200 whose body is not a JSON object (an HTML page, a
cut-off body, a JSON array) raises :class:`~asyncwait.LookupFailedError`: the service or
its URL is wrong, not the event, so it is retried like a failed request and then fails the
job (it is not bad input). The classes live in :mod:`asyncwait.errors`, with every other
exception. Each key is requested once per attempt.

Every Retry-After wait is counted as a retry: :class:`HttpStatistics` has
``retry_after_waits``, and a lookup join reports it with the operator's counters
(:meth:`HttpTable.counters`).

``Retry-After``: retry strategies are pure functions of the attempt number, so they cannot
wait for as long as a server asks. The table honours the header itself: on 429/503 (any
retryable status) carrying ``Retry-After``, it waits that long on the loop clock and asks
again, as long as the waits of one call add up to at most ``max_retry_after`` seconds
(and number at most 5); past that it raises :class:`HttpStatusError` with ``retry_after``
set and the operator's retry strategy (and deadline) take over. The operator's timeout
cancels such a wait.

This module says what a row is and how keys become requests; the requests themselves go
through ``_http_client.HttpClient``: one :class:`aiohttp.ClientSession` whose connector
holds at most ``pool_size`` connections (requests beyond that wait for one), the
Retry-After waits and the translation of the driver's errors.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, final
from urllib.parse import SplitResult, quote, urlsplit

from .._checks import check_int, check_seconds
from .._reprs import short_repr
from ..errors import ConfigError, LookupFailedError
from ._base import Row, TableState, import_driver
from ._http_client import HttpClient, shown_url, without_userinfo
from ._secrets import Secrets
from ._sql import Pooled, PoolSize, key_chunks

__all__ = ("HttpStatistics", "HttpTable", "http")

_METHODS: Final = ("GET", "POST")
# Connections unless pool_size says otherwise: the operator's default capacity.
_DEFAULT_POOL: Final = 100
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
    is not the expected JSON raises :class:`~asyncwait.LookupFailedError` naming the key and
    the URL. ``scan`` is not supported (a full cache raises :class:`~asyncwait.ConfigError`).
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
        self._template, self._auth = without_userinfo(parts)
        self._shown_template = shown_url(parts)
        self.name = self._shown_template + ("" if method == "GET" else f" ({method})")
        self._method = method
        self._headers = dict(headers)
        if batch_url is None:
            self._batch_url: str | None = None
            self._shown_batch = ""
            secrets = Secrets.in_url(parts)
        else:
            batch_parts = urlsplit(batch_url)
            self._batch_url = without_userinfo(batch_parts)[0]
            self._shown_batch = shown_url(batch_parts)
            secrets = Secrets.in_url(parts, batch_parts.password)
        self._size = PoolSize(pool_size, default=_DEFAULT_POOL, most=_DEFAULT_POOL)
        self._authorization_env = authorization_env
        self._state = TableState.NEW
        self._client = HttpClient(
            self.name,
            url=parts,
            batch_url=self._batch_url,
            secrets=secrets,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            max_retry_after=max_retry_after,
        )

    def expect_queries(self, queries: int) -> None:
        """Size the pool for ``queries`` concurrent requests to the batch endpoint.

        :class:`~asyncwait.join.LookupJoin` calls this before ``open()`` with its
        ``max_queries``. Without a ``batch_url`` a batch becomes one request per key, so
        the default pool (100) stays; an explicit ``pool_size`` always wins.
        """
        if self._batch_url is not None:
            super().expect_queries(queries)

    def defer_retry_after(self) -> None:
        """Raise 429/503 at once: the join's rate limit waits out ``Retry-After`` instead.

        :class:`~asyncwait.join.LookupJoin` calls this before ``open()`` when it has a
        ``rate_limit``, which pauses every call of the lookup for the time the server asks
        (the table alone would pause only the call that got the answer).
        """
        self._client.defer_retry_after()

    def one_call_per_key(self) -> bool:
        """Without a ``batch_url``, each key is a request of its own."""
        return self._batch_url is None

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
        await self._client.open(aiohttp, headers, self._size.value)
        self._state = TableState.OPEN

    async def close(self) -> None:
        self._state = TableState.CLOSED
        await self._client.close()

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
        what = f"key {short_repr(key)}"
        data = await self._client.exchange(
            self._method, url, shown, body, what, keys=1, miss_ok=True
        )
        if data is None:
            return None
        if not isinstance(data, dict):
            msg = (
                f"lookup {self.name}: {self._method} {shown} answered JSON "
                f"{type(data).__name__} for {what}, not an object: {short_repr(data)}"
            )
            raise LookupFailedError(msg, table=self.name)
        return data

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        if self._batch_url is None:
            return await self._get_each(list(dict.fromkeys(keys)))
        result, chunks = key_chunks(keys, _BATCH_CHUNK)
        for chunk in chunks:
            result.update(await self._get_batch(chunk))
        return result

    async def _get_each(self, keys: list[Hashable]) -> dict[Hashable, Row | None]:
        # Concurrent gets, one request per key; the connector's limit bounds how many are
        # on the wire. Every request runs to its end, then the first failure fails the
        # batch: each key was asked exactly once (the join never asks a failed batch again
        # key by key; the operator's retry strategy decides what is asked again).
        outcomes = await asyncio.gather(*(self.get(k) for k in keys), return_exceptions=True)
        result: dict[Hashable, Row | None] = {}
        for key, outcome in zip(keys, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome
            result[key] = outcome
        return result

    async def _get_batch(self, keys: list[Hashable]) -> dict[Hashable, Row | None]:
        assert self._batch_url is not None  # checked by get_many
        wire = [str(k) for k in keys]
        what = f"a batch of {len(keys)} keys"
        data = await self._client.exchange(
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
                f"lookup {self.name}: {where} answered {short_repr(data)} for {what}; "
                'expected a JSON object {"<key>": row or null}'
            )
            raise LookupFailedError(msg, table=self.name)
        result: dict[Hashable, Row | None] = {}
        for key, text in zip(keys, wire, strict=True):
            if text not in data:
                msg = f"lookup {self.name}: {where} left out key {text!r} from its answer"
                raise LookupFailedError(msg, table=self.name)
            row = data[text]
            if row is not None and not isinstance(row, dict):
                msg = (
                    f"lookup {self.name}: {where} answered {short_repr(row)} for key "
                    f"{text!r}; expected a JSON object or null"
                )
                raise LookupFailedError(msg, table=self.name)
            result[key] = row
        return result

    def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        msg = (
            f"lookup {self.name}: an HTTP lookup cannot list its whole table, so a full "
            "cache (cache.full) cannot load it; use cache.lru(...) instead"
        )
        raise ConfigError(msg)

    # ------------------------------------------------------------------ introspection

    def counters(self) -> dict[str, int]:
        """The counters a lookup join reports with its operator's: ``retry_after_waits``.

        Each Retry-After wait sends the request again: a retry the operator's own count
        does not see (see :class:`~asyncwait.lookups.CountedTable`).
        """
        return {"retry_after_waits": self._client.waits}

    def statistics(self) -> HttpStatistics:
        """Return the current counters."""
        client = self._client
        return HttpStatistics(
            requests=client.requests,
            batch_requests=client.batch_requests,
            keys=client.keys,
            in_flight=client.in_flight,
            retry_after_waits=client.waits,
            retry_after_seconds=client.waited,
            pool_size=self._size.value,
        )

    def __repr__(self) -> str:
        batch = f" batch={self._shown_batch!r}" if self._batch_url else ""
        return (
            f"<HttpTable {self.name!r}{batch} {self._state.value} pool={self._size.value} "
            f"requests={self._client.requests} in-flight={self._client.in_flight}>"
        )


def _check_url(field: str, url: object) -> SplitResult:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        shown = shown_url(parts) if parts is not None else repr(url)
        msg = f"lookups.http: {field} must be an http:// or https:// URL, got {shown!r}"
        raise ConfigError(msg)
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError as exc:
        msg = f"lookups.http: {field} has a bad port: {shown_url(parts)!r} ({exc})"
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

    * 200 with a JSON object: the row; 200 with anything else (HTML, malformed JSON, a
      JSON array): :class:`~asyncwait.LookupFailedError` naming the key and the URL.
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
        msg = f"lookups.http: url_template must contain '{{key}}' for GET, got {shown_url(parts)!r}"
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
