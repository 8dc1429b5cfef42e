"""How the requests of the http lookup table travel: one session, Retry-After, errors.

:class:`HttpClient` owns the :class:`aiohttp.ClientSession` of one table, sends its
requests, waits out ``Retry-After`` within the table's budget, turns a status other than
200 (and 404 for a key) into :class:`~asyncwait.errors.HttpStatusError`, a 200 whose body
is not JSON (an HTML error page, a cut-off body) into
:class:`~asyncwait.errors.LookupFailedError`, and aiohttp's errors into
:class:`ConnectionError`/:class:`TimeoutError` naming the table and ``host:port``, and
counts what it sends. The functions below say how a URL is sent (without
user info) and shown (query values masked, but the one holding ``{key}``).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlunsplit

from .._codec import dumps, loads
from .._reprs import short_repr
from ..errors import HttpStatusError, LookupFailedError
from ._base import TableState, closed_error
from ._secrets import MASK

if TYPE_CHECKING:
    import aiohttp

    from ._secrets import Secrets

__all__ = ("HttpClient", "host_port", "retry_after_seconds", "shown_url", "without_userinfo")

# Retry-After waits per call at most, whatever their total (a server answering
# "Retry-After: 0" forever must not keep a call looping).
_MAX_WAITS: Final = 5


@final
class HttpClient:
    """The session and the requests of one HTTP lookup table.

    The counters are read by the table's ``statistics()``: ``requests`` sent (``keys``
    asked by them, ``batch_requests`` of them to the batch endpoint), ``in_flight`` not
    answered yet, and the Retry-After ``waits`` and the seconds ``waited``.

    Args:
        name: the table's name, for messages.
        url: the per-key URL template, parsed: its host and port are probed at ``open``.
        batch_url: the batch endpoint as sent, or ``None``.
        secrets: the passwords to mask in driver text.
        request_timeout: seconds for one whole request, or ``None``.
        connect_timeout: seconds for one TCP connection.
        max_retry_after: the most seconds one call waits for ``Retry-After``.
    """

    def __init__(
        self,
        name: str,
        *,
        url: SplitResult,
        batch_url: str | None,
        secrets: Secrets,
        request_timeout: float | None,
        connect_timeout: float,
        max_retry_after: float,
    ) -> None:
        self._name = name
        self._where = host_port(url)
        self._host = url.hostname or "localhost"
        self._port = int(self._where.rsplit(":", 1)[1])
        self._batch_url = batch_url
        self._secrets = secrets
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._max_retry_after = max_retry_after
        self._state = TableState.NEW
        self._session: aiohttp.ClientSession | None = None
        self._driver: Any = None  # the aiohttp module, once open
        self.requests = self.batch_requests = self.keys = self.in_flight = 0
        self.waits = 0
        self.waited = 0.0

    def defer_retry_after(self) -> None:
        """Never wait for ``Retry-After``: raise the answer with it (the caller waits)."""
        self._max_retry_after = 0.0

    async def open(self, aiohttp: Any, headers: dict[str, str], pool_size: int) -> None:
        """Check that ``host:port`` accepts connections, then start the session.

        Args:
            aiohttp: the driver module.
            headers: sent with every request.
            pool_size: the most connections, and so requests in flight.
        """
        await self._probe()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=pool_size),
            timeout=aiohttp.ClientTimeout(
                total=self._request_timeout, sock_connect=self._connect_timeout
            ),
            headers=headers,
            raise_for_status=False,
            json_serialize=_json_text,
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
                f"lookup {self._name}: cannot connect to {self._where}: "
                f"{exc.strerror if isinstance(exc, OSError) and exc.strerror else exc!r}"
            )
            raise ConnectionError(msg) from exc
        writer.close()
        # The probe's connection is ours alone: how it ends does not matter.
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def close(self) -> None:
        """Close the session; idempotent."""
        session, self._session = self._session, None
        self._state = TableState.CLOSED
        if session is not None:
            await session.close()

    async def exchange(
        self, method: str, url: str, shown: str, body: Any, what: str, *, keys: int, miss_ok: bool
    ) -> Any:
        """Send one request and return its JSON, waiting out Retry-After.

        Returns ``None`` for a 404 when ``miss_ok`` (a per-key request: the key has no row).

        Raises:
            LookupFailedError: a 200 whose body is not JSON (one request was sent for it;
                nothing is asked again here: retrying is the operator's decision).
            HttpStatusError: any other status, after the Retry-After waits allowed.
        """
        waited = 0.0
        waits = 0
        while True:
            status, reason, raw, retry_after, kind = await self._send(
                method, url, shown, body, keys
            )
            if status == 200:
                try:
                    return loads(raw)
                except ValueError as exc:
                    # An HTML error page from a proxy or a wrong URL is the usual cause:
                    # say what came, so that the fix (the URL, the service) is obvious.
                    msg = (
                        f"lookup {self._name}: {method} {shown} answered 200 with a body "
                        f"that is not JSON ({kind or 'no Content-Type'}) for {what} ({exc}): "
                        f"{short_repr(raw[:200])}"
                    )
                    raise LookupFailedError(msg, table=self._name) from exc
            if status == 404 and miss_ok:
                return None
            error = HttpStatusError(
                f"lookup {self._name}: {method} {shown} answered {status} {reason} for {what}"
                + ("" if retry_after is None else f" (Retry-After: {retry_after:g} s)")
                + (f": {short_repr(raw[:200])}" if raw and not 200 <= status < 300 else ""),
                status=status,
                url=shown,
                retry_after=retry_after,
                table=self._name,
            )
            if (
                error.retryable
                and retry_after is not None
                and waited + retry_after <= self._max_retry_after
                and waits < _MAX_WAITS
            ):
                waits += 1
                waited += retry_after
                self.waits += 1
                self.waited += retry_after
                await asyncio.sleep(retry_after)
                continue
            raise error

    async def _send(
        self, method: str, url: str, shown: str, body: Any, keys: int
    ) -> tuple[int, str, bytes, float | None, str]:
        """Send one request: its status, reason, body, Retry-After and Content-Type."""
        session = self._session
        if session is None:
            raise closed_error(self._name, self._state)
        aiohttp = self._driver
        self.requests += 1
        self.batch_requests += url == self._batch_url
        self.keys += keys
        self.in_flight += 1
        try:
            async with session.request(method, url, json=body) as response:
                raw = await response.read()
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                kind = response.headers.get("Content-Type", "")
                return response.status, response.reason or "", raw, retry_after, kind
        except aiohttp.ClientConnectorError as exc:
            msg = (
                f"lookup {self._name}: cannot connect to {exc.host}:{exc.port} for "
                f"{method} {shown}: {exc.os_error.strerror or exc.os_error}"
            )
            raise ConnectionError(msg) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # The request URL has no credentials, but its query may hold a token: show the
            # URL as the name does, and mask the passwords in case the driver echoes them.
            detail = self._secrets.scrub((str(exc) or type(exc).__name__).replace(url, shown))
            msg = (
                f"lookup {self._name}: the connection to {self._where} broke during "
                f"{method} {shown}: {detail}"
            )
            raise ConnectionError(msg) from exc
        except TimeoutError as exc:  # aiohttp's ServerTimeoutError is one, too
            msg = (
                f"lookup {self._name}: {method} {shown} got no answer within "
                f"{self._request_timeout:g} s"
            )
            raise TimeoutError(msg) from exc
        finally:
            self.in_flight -= 1


def retry_after_seconds(value: str | None) -> float | None:
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


def host_port(parts: SplitResult) -> str:
    """``host:port`` of a URL, with the scheme's default port."""
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return f"{parts.hostname or 'localhost'}:{port}"


def without_userinfo(parts: SplitResult) -> tuple[str, tuple[str, str] | None]:
    """The URL without ``user:password@``, and those credentials (for basic auth)."""
    netloc = parts.netloc.rpartition("@")[2]
    url = urlunsplit(parts._replace(netloc=netloc))
    if parts.username is None:
        return url, None
    return url, (unquote(parts.username), unquote(parts.password or ""))


def shown_url(parts: SplitResult) -> str:
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


def _json_text(value: Any) -> str:
    """A request body as JSON text (the project's codec, not aiohttp's ``json.dumps``)."""
    return dumps(value).decode()
