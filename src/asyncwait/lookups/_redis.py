"""Redis lookup table over redis-py's asyncio client: one key (or hash) per row.

A row lives at the Redis key ``key_prefix + str(key)``, either as a **hash** (``HGETALL``:
field -> value, all ``str``) or as a **JSON** string holding an object (``GET`` +
``json.loads``). ``get_many`` answers a whole batch in one round trip: ``MGET`` for JSON;
for hashes a small server-side Lua script (``EVALSHA``) that runs ``HGETALL`` on every key
and answers one JSON string, or, where the server refuses scripts (ACLs, a managed service),
a non-transactional pipeline of ``HGETALL`` (about 10x more client CPU per key, see
``bench/kv.py``). ``scan`` walks ``SCAN MATCH prefix*`` page by page, fetching each page's
values in one more round trip.

Connections come from one blocking pool of ``pool_size`` connections: a lookup waits for a
free connection instead of failing. redis-py's own retries are switched off (a retry is the
operator's decision, see :mod:`asyncwait.retry`); its connection and timeout errors become
the built-in :class:`ConnectionError` / :class:`TimeoutError`, naming the lookup and
``host:port`` and never the password. Replies become rows in ``_redis_replies``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast, final
from urllib.parse import SplitResult, urlsplit

from .._checks import check_int, check_seconds
from .._reprs import short_repr
from ..errors import ConfigError
from ._base import Row, TableState, closed_error, import_driver
from ._redis_replies import HGETALL_MANY, Replies
from ._secrets import Secrets
from ._sql import Pooled, PoolSize, key_chunks

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ("RedisStatistics", "RedisTable", "redis")

# Keys per MGET / pipeline: bounds one reply's size whatever batch the caller sends.
_CHUNK: Final = 1000
# Keys asked per SCAN call (a hint to Redis, not a limit).
_SCAN_COUNT: Final = 1000
# The environment variable redis-cli reads a password from; used when the URL has none.
_PASSWORD_ENV: Final = "REDISCLI_AUTH"
_SCHEMES: Final = ("redis", "rediss", "unix")
# Connections when neither pool_size nor a lookup join says how many; the most a join's
# expect_queries() asks for.
_DEFAULT_POOL: Final = 10
_MAX_AUTO_POOL: Final = 100
_VALUE_FORMATS: Final = ("hash", "json")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


@final
@dataclass(frozen=True, slots=True)
class RedisStatistics:
    """A snapshot of a :class:`RedisTable`'s counters.

    Attributes:
        round_trips: requests sent (a ``get``, each chunk of a ``get_many``, each scan page).
        keys: Redis keys read by those requests.
        in_flight: requests sent and not answered yet.
        pool_size: the most connections the table opens.
    """

    round_trips: int
    keys: int
    in_flight: int
    pool_size: int


@final
class RedisTable(Pooled):
    """A lookup table stored in Redis, one Redis key per row; build it with :func:`redis`.

    See :class:`~asyncwait.lookups.LookupTable` for the contract. A row is the hash at
    ``key_prefix + str(key)`` (``value="hash"``; an empty or missing hash is a miss) or the
    JSON object stored there as a string (``value="json"``; a missing key is a miss).

    Errors: an unreachable server raises :class:`ConnectionError` (a timeout
    :class:`TimeoutError`) naming the table and ``host:port``; a value that is not a JSON
    object, or a Redis key of the wrong type, raises :class:`~asyncwait.LookupFailedError`
    naming the Redis key and the table (a failed lookup, not bad input: the stored data is
    wrong, not the event). Nothing is retried inside the table.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str,
        value: str,
        pool_size: int | None,
        connect_timeout: float,
    ) -> None:
        parts = urlsplit(url)
        self._url = url
        self._where = _host_port(parts)
        self._secrets = Secrets.in_url(parts)
        self.name = f"{_safe_url(parts)}/{key_prefix}*"
        self._prefix = key_prefix
        self._json = value == "json"
        self._replies = Replies(self.name, value)
        self._size = PoolSize(pool_size, default=_DEFAULT_POOL, most=_MAX_AUTO_POOL)
        self._connect_timeout = connect_timeout
        self._state = TableState.NEW
        self._client: Redis | None = None
        self._driver: Any = None  # the redis.exceptions module, once open
        # Reads a batch of hashes in one command (see HGETALL_MANY); None: use pipelines.
        self._script: Any = None
        self._script_refused = ""  # why the server refused the script, if it did
        self._round_trips = 0
        self._keys = 0
        self._in_flight = 0

    @property
    def value_format(self) -> str:
        """``"hash"`` or ``"json"``: how rows are stored."""
        return "json" if self._json else "hash"

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._state is TableState.OPEN:
            return
        redis_asyncio, exceptions, retry_cls, no_backoff = _import_redis()
        options: dict[str, Any] = {
            "max_connections": self._size.value,
            "timeout": None,  # wait for a free connection: the pool is the concurrency bound
            "decode_responses": True,
            "socket_connect_timeout": self._connect_timeout,
            "retry": retry_cls(no_backoff(), 0),  # retries are the operator's business
        }
        parts = urlsplit(self._url)
        if parts.password is None and os.environ.get(_PASSWORD_ENV):
            options["password"] = os.environ[_PASSWORD_ENV]
        try:
            pool = redis_asyncio.BlockingConnectionPool.from_url(self._url, **options)
        except (ValueError, TypeError) as exc:
            msg = f"lookup {self.name}: bad Redis URL {_safe_url(parts)!r}: {self._reason(exc)}"
            raise ConfigError(msg) from None
        client = redis_asyncio.Redis(connection_pool=pool)
        try:
            await client.ping()
        except exceptions.AuthenticationError as exc:
            await _close_client(client)
            msg = (
                f"lookup {self.name}: Redis at {self._where} rejected the credentials "
                f"(from the URL, or ${_PASSWORD_ENV}): {self._reason(exc)}"
            )
            raise ConfigError(msg) from exc
        except exceptions.ResponseError as exc:
            await _close_client(client)
            msg = f"lookup {self.name}: Redis at {self._where} refused PING: {self._reason(exc)}"
            raise ConfigError(msg) from exc
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError) as exc:
            await _close_client(client)
            msg = (
                f"lookup {self.name}: cannot connect to Redis at {self._where}: {self._reason(exc)}"
            )
            raise ConnectionError(msg) from exc
        except BaseException:
            await _close_client(client)
            raise
        self._client = client
        self._driver = exceptions
        self._script = None if self._json else client.register_script(HGETALL_MANY)
        self._state = TableState.OPEN

    async def close(self) -> None:
        client, self._client = self._client, None
        self._state = TableState.CLOSED
        if client is not None:
            await _close_client(client)

    def _reason(self, exc: BaseException) -> str:
        """``str(exc)`` with the URL's password masked, in case the driver echoes it."""
        return self._secrets.scrub(str(exc) or type(exc).__name__)

    # ------------------------------------------------------------------ lookups

    def _open_client(self) -> Redis:
        client = self._client
        if client is None:
            raise closed_error(self.name, self._state)
        return client

    @contextlib.contextmanager
    def _request(self, keys: int) -> Iterator[None]:
        """Count one round trip and translate the driver's errors at the boundary."""
        exceptions = self._driver
        self._round_trips += 1
        self._keys += keys
        self._in_flight += 1
        try:
            yield
        except exceptions.TimeoutError as exc:
            msg = f"lookup {self.name}: Redis at {self._where} did not answer in time: {exc}"
            raise TimeoutError(msg) from exc
        except exceptions.ConnectionError as exc:
            msg = f"lookup {self.name}: lost the connection to Redis at {self._where}: {exc}"
            raise ConnectionError(msg) from exc
        finally:
            self._in_flight -= 1

    async def get(self, key: Hashable) -> Row | None:
        client = self._open_client()
        redis_key = self._prefix + str(key)
        with self._request(1):
            try:
                if self._json:
                    text = await client.get(redis_key)
                else:
                    fields = await client.hgetall(redis_key)
            except self._driver.ResponseError as exc:
                raise self._replies.bad_type(redis_key, exc) from exc
        if self._json:
            return None if text is None else self._replies.json_row(redis_key, text)
        # decode_responses=True: field names and values are str.
        return cast("Row", dict(fields)) if fields else None

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        result, chunks = key_chunks(keys, _CHUNK)
        for chunk in chunks:
            redis_keys = [self._prefix + str(k) for k in chunk]
            rows = await self._fetch(redis_keys)
            result.update(zip(chunk, rows, strict=True))
        return result

    async def _fetch(self, redis_keys: list[str]) -> list[Row | None]:
        """Read the rows at ``redis_keys`` in one round trip (``None`` where there is none).

        Raises:
            LookupFailedError: one of the values is malformed (the first one found is named).
        """
        client = self._open_client()
        if self._json:
            with self._request(len(redis_keys)):
                texts = await client.mget(redis_keys)
            return [
                None if text is None else self._replies.json_row(rk, text)
                for rk, text in zip(redis_keys, texts, strict=True)
            ]
        if self._script is not None:
            try:
                with self._request(len(redis_keys)):
                    encoded = await self._script(keys=redis_keys)
            except self._driver.ResponseError as exc:
                # Scripting refused (disabled, no EVAL permission): pipelines from now on.
                self._script = None
                self._script_refused = short_repr(str(exc))
            else:
                return self._replies.script_rows(redis_keys, encoded)
        return await self._fetch_pipelined(client, redis_keys)

    async def _fetch_pipelined(self, client: Redis, redis_keys: list[str]) -> list[Row | None]:
        pipe = client.pipeline(transaction=False)
        for rk in redis_keys:
            pipe.hgetall(rk)
        with self._request(len(redis_keys)):
            replies = await pipe.execute(raise_on_error=False)
        return self._replies.pipeline_rows(redis_keys, replies, self._driver.ResponseError)

    async def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        client = self._open_client()
        prefix = self._prefix
        pattern = _GLOB_SPECIAL.sub(r"\\\1", prefix) + "*"
        cursor: int = 0
        while True:
            with self._request(0):
                cursor, found = await client.scan(cursor, match=pattern, count=_SCAN_COUNT)
            redis_keys = cast("list[str]", list(dict.fromkeys(found)))  # may repeat a key
            if redis_keys:
                rows = await self._fetch(redis_keys)
                for rk, row in zip(redis_keys, rows, strict=True):
                    if row is not None:  # deleted between SCAN and the read
                        yield rk[len(prefix) :], row
            if cursor == 0:
                return

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> RedisStatistics:
        """Return the current counters."""
        return RedisStatistics(
            round_trips=self._round_trips,
            keys=self._keys,
            in_flight=self._in_flight,
            pool_size=self._size.value,
        )

    def __repr__(self) -> str:
        refused = f" script refused: {self._script_refused}" if self._script_refused else ""
        return (
            f"<RedisTable {self.name!r} {self._state.value} {self.value_format}{refused} "
            f"pool={self._size.value} round-trips={self._round_trips} "
            f"in-flight={self._in_flight}>"
        )


async def _close_client(client: Redis) -> None:
    pool = client.connection_pool
    await client.aclose()
    await pool.disconnect()


def _host_port(parts: SplitResult) -> str:
    if parts.scheme == "unix":
        return parts.path or "(no socket path)"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379  # reported as a bad URL by open()
    return f"{parts.hostname or 'localhost'}:{port}"


def _safe_url(parts: SplitResult) -> str:
    """The URL without user name, password or query: what names and messages show."""
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    db = parts.path.strip("/") or "0"
    return f"{parts.scheme}://{_host_port(parts)}/{db}"


def _import_redis() -> tuple[Any, Any, Any, Any]:
    driver = import_driver("redis.asyncio", connector="redis", package="redis-py")
    # The same distribution as redis.asyncio, so present once it is.
    import redis.exceptions
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return driver, redis.exceptions, Retry, NoBackoff


def redis(
    url: str,
    *,
    key_prefix: str = "",
    value: str = "hash",
    pool_size: int | None = None,
    connect_timeout: float = 5.0,
) -> RedisTable:
    """Return a lookup table whose row for ``key`` is stored at Redis key ``key_prefix + str(key)``.

    Nothing connects here: ``open()`` creates the connection pool and sends ``PING``, so a
    server that is down, or rejects the credentials, is reported when the join opens.

    * ``value="hash"``: the row is the hash's fields (``HGETALL``); values are ``str``, as
      Redis stores them; an empty or missing hash is a miss (``None``).
    * ``value="json"``: the row is the JSON object stored as a string (``GET``); a missing
      key is a miss; anything but a JSON object raises
      :class:`~asyncwait.LookupFailedError` (so do keys holding another Redis type).

    ``get_many`` reads a batch of at most 1000 keys in one round trip (``MGET``; for hashes
    one ``EVALSHA`` of a read-only script calling ``HGETALL`` per key, or a
    non-transactional pipeline of ``HGETALL`` when the server refuses scripts). ``scan``
    (what ``cache.full`` loads) walks ``SCAN MATCH key_prefix*`` and strips the prefix, so
    its keys are ``str``: join on string keys when you use a full cache. At most
    ``pool_size`` commands run at once; more wait for a connection. A password comes from
    the URL (``redis://:pw@host:6379/0``, or ``redis://user:pw@…``) or, when the URL has
    none, from ``$REDISCLI_AUTH``; it never appears in ``name``, errors or ``repr``.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS) or
            ``unix:///path/to/socket``.
        key_prefix: prepended to ``str(key)`` to form the Redis key, e.g. ``"dim_user:"``.
        value: ``"hash"`` or ``"json"``.
        pool_size: the most connections (and so commands in flight). Default: sized by
            the lookup join (its queries in flight + 1: 2 when batching, the operator's
            capacity + 1 when not, at most 100), or 10 when used alone.
        connect_timeout: seconds to wait for a TCP connection to Redis.

    Returns:
        The table (a :class:`~asyncwait.lookups.LookupTable`), not yet open.

    Raises:
        ConfigError: ``url`` is not a Redis URL, ``value`` is not ``"hash"``/``"json"``,
            ``key_prefix`` is not a string or ``pool_size``/``connect_timeout`` is not
            positive.

    >>> users = redis("redis://:secret@127.0.0.1:6379/0", key_prefix="dim_user:")
    >>> users.name
    'redis://127.0.0.1:6379/0/dim_user:*'
    """
    if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
        shown = _safe_url(urlsplit(url)) if isinstance(url, str) else repr(url)
        msg = (
            f"lookups.redis: url must be redis://host:port/db, rediss://… or unix://path, "
            f"got {shown!r}"
        )
        raise ConfigError(msg)
    if not isinstance(key_prefix, str):
        msg = f"lookups.redis: key_prefix must be a string, got {key_prefix!r}"
        raise ConfigError(msg)
    if value not in _VALUE_FORMATS:
        msg = f"lookups.redis: value must be 'hash' or 'json', got {value!r}"
        raise ConfigError(msg)
    return RedisTable(
        url,
        key_prefix=key_prefix,
        value=value,
        pool_size=check_int("lookups.redis", "pool_size", pool_size, optional=True),
        connect_timeout=check_seconds("lookups.redis", "connect_timeout", connect_timeout),
    )
