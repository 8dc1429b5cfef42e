"""Prometheus metrics of a running job: a collector, a registry and a ``/metrics`` endpoint.

Nothing is counted here. The job, its operators, joins and caches already keep their
counters in plain attributes; :class:`PrometheusCollector` reads them through
:meth:`StreamEnvironment.progress` when Prometheus scrapes, so a job pays nothing per
element for being watched. Mount the collector in your own application::

    registry = asyncwait.metrics_registry(env)   # a prometheus_client CollectorRegistry
    # e.g. prometheus_client.make_asgi_app(registry) -- but read it on the job's loop

or let :class:`MetricsEndpoint` serve ``/metrics`` on the job's own event loop (what
``asyncwait run --metrics-port`` does)::

    endpoint = MetricsEndpoint(metrics_registry(env), port=9108)  # listens now
    async with endpoint:                                           # serves from here
        result = await env.execute_async()

``progress()`` is read on the loop thread, so the registry must be rendered there too: the
endpoint answers each request on the loop itself (a protocol, no task, no thread). Needs
``prometheus_client`` (``pip install 'asyncwait[metrics]'``). Families and labels are listed
in ``docs/observability.md``.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast, final

from .errors import ConfigError
from .metrics import HistogramSnapshot
from .runtime import JobProgress, OperatorSummary, StreamEnvironment

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ("MetricsEndpoint", "PrometheusCollector", "metrics_registry")

_INSTALL: Final = "pip install 'asyncwait[metrics]'"
_MAX_REQUEST: Final = 16 * 1024  # bytes of request head an endpoint reads at most
# What generate_latest writes: the classic text format, which every Prometheus reads.
_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# Counters of an operator's function exported under a family of their own (the rest go to
# asyncwait_operator_counter_total{counter=...}); the gauge-like ones are not totals.
_LOOKUP_TOTALS: Final = {
    "cache_hits": ("asyncwait_lookup_cache_hits", "Lookups answered by the cache."),
    "cache_misses": ("asyncwait_lookup_cache_misses", "Lookups the cache could not answer."),
    "matched": ("asyncwait_lookup_matched", "Events whose lookup found a row."),
    "missed": ("asyncwait_lookup_missed", "Events whose lookup found no row."),
    "breaker_openings": (
        "asyncwait_lookup_breaker_openings",
        "Times the lookup's circuit breaker opened.",
    ),
}
_LOOKUP_GAUGES: Final = {
    "breaker_open": (
        "asyncwait_lookup_breaker_open",
        "1 while the lookup's circuit breaker is open or probing, else 0.",
    ),
    "concurrency_limit": (
        "asyncwait_lookup_concurrency_limit",
        "The adaptive concurrency limit of the lookup now.",
    ),
}


def _client() -> Any:
    try:
        import prometheus_client.metrics_core as core
    except ModuleNotFoundError as exc:
        msg = f"Prometheus metrics need prometheus_client: {_INSTALL}"
        raise ConfigError(msg) from exc
    return core


def _go(value: float) -> str:
    """A bucket bound as Prometheus writes it (``+Inf``, ``0.001``)."""
    return "+Inf" if value == math.inf else repr(float(value))


@final
class PrometheusCollector:
    """A ``prometheus_client`` collector of one :class:`StreamEnvironment`'s job.

    Each scrape calls ``env.progress()`` once and turns it into metric families (labels
    ``job`` and, per operator, ``operator``); it must run on the job's event loop thread.
    Between two runs of the environment it reports the last run's final numbers. Register
    it with ``registry.register(PrometheusCollector(env))`` or use :func:`metrics_registry`.
    """

    def __init__(self, env: StreamEnvironment) -> None:
        if not isinstance(env, StreamEnvironment):
            msg = f"PrometheusCollector needs a StreamEnvironment, got {env!r}"
            raise TypeError(msg)
        self.env = env

    def __repr__(self) -> str:
        return f"<PrometheusCollector of job {self.env.name!r}>"

    def collect(self) -> Iterator[Metric]:
        """Yield the job's metric families now (called by the registry on each scrape)."""
        core = _client()
        progress = self.env.progress()
        yield from _job_families(core, progress)
        yield from _operator_families(core, progress)


def _job_families(core: Any, p: JobProgress) -> Iterator[Metric]:
    job = [p.name]

    def total(name: str, doc: str, value: float) -> Metric:
        family = core.CounterMetricFamily(name, doc, labels=["job"])
        family.add_metric(job, value)
        return family  # type: ignore[no-any-return]

    def gauge(name: str, doc: str, value: float) -> Metric:
        family = core.GaugeMetricFamily(name, doc, labels=["job"])
        family.add_metric(job, value)
        return family  # type: ignore[no-any-return]

    yield total("asyncwait_events_in", "Elements read from the sources.", p.events_in)
    yield total("asyncwait_events_out", "Records written by the sinks.", p.events_out)
    yield total("asyncwait_errors", "Bad input elements routed to the errors file.", p.errors)
    yield total("asyncwait_skipped", "Events dropped by on_error = skip.", p.skipped)
    yield total(
        "asyncwait_dead_letters", "Events whose lookup failed, dead-lettered.", p.dead_letters
    )
    yield total("asyncwait_checkpoints", "Checkpoints completed by this run.", p.checkpoints)
    yield _histogram(
        core,
        "asyncwait_checkpoint_duration_seconds",
        "Seconds from a checkpoint's trigger to its commit.",
        ["job"],
        [(job, p.checkpoint_durations)],
    )
    yield gauge("asyncwait_job_running", "1 while the job runs, else 0.", int(p.running))
    yield gauge("asyncwait_job_elapsed_seconds", "Seconds the job has run.", p.elapsed)


def _operator_families(core: Any, p: JobProgress) -> Iterator[Metric]:
    labels = ["job", "operator"]
    ops = p.operators

    def per_op(
        kind: str, name: str, doc: str, values: Sequence[tuple[OperatorSummary, float]]
    ) -> Any:
        cls = core.CounterMetricFamily if kind == "counter" else core.GaugeMetricFamily
        family = cls(name, doc, labels=labels)
        for op, value in values:
            family.add_metric([p.name, op.name], value)
        return family

    yield per_op(
        "gauge",
        "asyncwait_operator_in_flight",
        "Records admitted and not complete.",
        [(op, op.in_flight) for op in ops],
    )
    yield per_op(
        "gauge",
        "asyncwait_operator_capacity",
        "The most entries the operator holds.",
        [(op, op.capacity) for op in ops],
    )
    yield per_op(
        "gauge",
        "asyncwait_operator_queued",
        "Entries holding a slot (in flight, completed not emitted, watermarks).",
        [(op, op.queued) for op in ops],
    )
    for attr, doc in (
        ("emitted", "Entries emitted."),
        ("retries", "Retry attempts started."),
        ("timeouts", "Elements whose deadline passed."),
        ("failures", "Elements that failed."),
        ("attempt_timeouts", "Attempts abandoned after attempt_timeout."),
        ("skipped", "Elements dropped by on_error = skip."),
        ("dead_letters", "Elements sent to the errors file by on_error = dead_letter."),
        ("defaulted", "Elements completed with on_error = default."),
    ):
        yield per_op(
            "counter",
            f"asyncwait_operator_{attr}",
            doc,
            [(op, getattr(op, attr)) for op in ops],
        )
    yield _histogram(
        core,
        "asyncwait_operator_latency_seconds",
        "Seconds from an element's admission to its completion.",
        labels,
        [([p.name, op.name], op.latency) for op in ops],
    )
    for key, (name, doc) in _LOOKUP_TOTALS.items():
        found = [(op, op.counters[key]) for op in ops if key in op.counters]
        yield per_op("counter", name, doc, found)
    for key, (name, doc) in _LOOKUP_GAUGES.items():
        found = [(op, op.counters[key]) for op in ops if key in op.counters]
        yield per_op("gauge", name, doc, found)
    other = core.CounterMetricFamily(
        "asyncwait_operator_counter",
        "Other counters of an operator's function (e.g. dropped, rate_limit_waits).",
        labels=[*labels, "counter"],
    )
    for op in ops:
        for key, value in sorted(op.counters.items()):
            if key not in _LOOKUP_TOTALS and key not in _LOOKUP_GAUGES:
                other.add_metric([p.name, op.name, key], value)
    yield other


def _histogram(
    core: Any,
    name: str,
    doc: str,
    labels: list[str],
    values: list[tuple[list[str], HistogramSnapshot]],
) -> Metric:
    family = core.HistogramMetricFamily(name, doc, labels=labels)
    for label_values, snap in values:
        buckets = [(_go(bound), count) for bound, count in snap.buckets]
        family.add_metric(label_values, buckets, snap.total)
    return family  # type: ignore[no-any-return]


def metrics_registry(env: StreamEnvironment | None = None) -> CollectorRegistry:
    """A new ``prometheus_client`` registry holding a :class:`PrometheusCollector` of ``env``.

    Render it on the job's event loop thread (``generate_latest(registry)``), e.g. from an
    ``asyncio`` web handler; :class:`MetricsEndpoint` does exactly that. Without ``env``
    the registry is empty (register collectors later).

    Raises:
        ConfigError: ``prometheus_client`` is not installed (``asyncwait[metrics]``).
    """
    _client()
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    if env is not None:
        registry.register(PrometheusCollector(env))
    return registry


@final
class MetricsEndpoint:
    """Serves a registry as ``GET /metrics`` over HTTP, on the running event loop.

    The socket is bound and listening when the object is made, so a port in use (or not
    permitted) raises before any job starts; requests are answered from ``async with
    endpoint:`` on, on that loop (each in the loop's callback, without a task or thread),
    until the block ends, which closes the socket and every connection.

    Args:
        registry: what to render, e.g. :func:`metrics_registry`.
        host: the address to listen on.
        port: the TCP port; 0 picks a free one (see :attr:`port`).

    Raises:
        OSError: the address cannot be bound (in use, not permitted, unknown host).
        ConfigError: ``prometheus_client`` is not installed.
    """

    def __init__(
        self, registry: CollectorRegistry, *, host: str = "127.0.0.1", port: int = 9108
    ) -> None:
        _client()
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            msg = f"MetricsEndpoint: port must be an int in 0..65535, got {port!r}"
            raise ConfigError(msg)
        self.registry = registry
        self.host = host
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(16)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._socket: socket.socket | None = sock
        self.port: int = sock.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Transport] = set()

    def __repr__(self) -> str:
        state = "serving" if self._server is not None else "idle"
        if self._socket is None and self._server is None:
            state = "closed"
        return f"<MetricsEndpoint http://{self.host}:{self.port}/metrics {state}>"

    @property
    def url(self) -> str:
        """The address of the metrics page, ``http://host:port/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def __aenter__(self) -> MetricsEndpoint:
        sock = self._socket
        if sock is None or self._server is not None:
            msg = f"{self!r} cannot serve again"
            raise RuntimeError(msg)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Scrape(self), sock=sock)
        self._socket = None  # the server owns it now
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop serving: close the socket and every open connection (idempotent)."""
        server, self._server = self._server, None
        self.close()
        if server is not None:
            server.close()
            for transport in list(self._connections):
                transport.close()
            await server.wait_closed()

    def close(self) -> None:
        """Release a socket that never served (e.g. the job could not start)."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def render(self) -> bytes:
        """The registry in Prometheus' text format (call it on the job's loop thread)."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)


class _Scrape(asyncio.Protocol):
    """One HTTP/1.x connection: read the request head, answer it, close."""

    def __init__(self, endpoint: MetricsEndpoint) -> None:
        self._endpoint = endpoint
        self._head = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast("asyncio.Transport", transport)
        self._endpoint._connections.add(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._endpoint._connections.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._head += data
        if b"\r\n\r\n" not in self._head and b"\n\n" not in self._head:
            if len(self._head) > _MAX_REQUEST:
                self._answer(431, b"request head too large\n")
            return
        method, _, rest = bytes(self._head).partition(b" ")
        target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            self._answer(405, b"only GET\n")
        elif target not in (b"/metrics", b"/"):
            self._answer(404, b"see /metrics\n")
        else:
            body = self._endpoint.render()
            self._answer(200, body, _CONTENT_TYPE, head_only=method == b"HEAD")

    def _answer(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        *,
        head_only: bool = False,
    ) -> None:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        assert self._transport is not None
        self._transport.write(head if head_only else head + body)
        self._transport.close()
