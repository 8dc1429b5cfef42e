"""What the Kafka source and sink may rely on, checked against a real broker (see ``_kafka.py``).

The broker is Tansu 0.6.0 (memory storage) and the client aiokafka. These tests are the
contract of that pair: the behaviours a source with consumer groups, offsets committed after
the outputs, per-partition watermarks and offsets kept in a sink's transaction builds on, and
the quirks it must work around. A quirk is asserted as it is, so that a broker that fixes it
turns a test red and the workaround can go. Timings print with ``-s``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Set
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    NodeNotReadyError,
    UnknownError,
)
from aiokafka.protocol.metadata import MetadataRequest

from ._kafka import TANSU_VERSION, TansuBroker, metadata_brokers
from ._system import free_port

# The settings that make a group form fast on this broker (see
# test_join_and_rebalance_time_follow_the_session_timeout). request_timeout_ms must stay well
# above the join delay: a JoinGroup answer takes that long to come.
FAST_GROUP: dict[str, Any] = {
    "session_timeout_ms": 1000,
    "heartbeat_interval_ms": 100,
    "rebalance_timeout_ms": 1000,
    "request_timeout_ms": 5000,
}


def _name(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:8]}"


def _log(line: str) -> None:
    print(f"[kafka] {line}")


def _partitions(assigned: Set[Any]) -> frozenset[int]:
    return frozenset(int(tp.partition) for tp in assigned)


@pytest.fixture
async def clients() -> AsyncIterator[AsyncExitStack]:
    """Every client a test starts is stopped here, even when the test fails half-way."""
    async with AsyncExitStack() as stack:
        yield stack


async def _started(stack: AsyncExitStack, client: Any) -> Any:
    """Start an aiokafka client and register its stop (or close) with ``stack``."""
    stop = client.close if isinstance(client, AIOKafkaAdminClient) else client.stop
    stack.push_async_callback(stop)
    await client.start()
    return client


def _json_producer(broker: TansuBroker, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap_servers,
        key_serializer=lambda k: k.encode(),
        value_serializer=lambda v: json.dumps(v).encode(),
        **options,
    )


def _consumer(
    broker: TansuBroker, *topics: str, fast: bool = True, **options: Any
) -> AIOKafkaConsumer:
    """A consumer that commits by hand, from the earliest offset; with ``FAST_GROUP`` timers
    when it joins a group, unless ``fast`` is false (then aiokafka's defaults, or ``options``).
    """
    settings: dict[str, Any] = {"auto_offset_reset": "earliest", "enable_auto_commit": False}
    if fast and options.get("group_id") is not None:
        settings.update(FAST_GROUP)
    settings.update(options)
    return AIOKafkaConsumer(*topics, bootstrap_servers=broker.bootstrap_servers, **settings)


async def _produce_per_partition(
    broker: TansuBroker, stack: AsyncExitStack, topic: str, per_partition: int, partitions: int = 4
) -> None:
    producer = await _started(stack, _json_producer(broker))
    for i in range(per_partition * partitions):
        await producer.send(topic, {"n": i}, key=f"k{i}", partition=i % partitions)
    await producer.flush()


async def _until(
    check: Callable[[], bool], pump: Callable[[], Awaitable[object]], seconds: float, what: str
) -> float:
    """Call ``pump`` (a bounded wait on the broker) until ``check``; return the time it took."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > seconds:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await pump()
    return time.monotonic() - began


@dataclass
class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka has no py.typed
    """Records rebalance callbacks; optionally seeks on assignment, commits on revocation.

    ``seek_to`` plays the offsets a sink stored in its own transaction: on assignment the
    consumer seeks there, whatever the broker has committed. ``processed`` is the next offset
    to read per partition; on revocation it is committed, so the next owner starts there.
    """

    consumer: Any = None
    seek_to: dict[int, int] | None = None
    processed: dict[TopicPartition, int] | None = None
    events: list[tuple[str, float, frozenset[int]]] = field(default_factory=list)

    async def on_partitions_revoked(self, revoked: Set[Any]) -> None:
        self.events.append(("revoked", time.monotonic(), _partitions(revoked)))
        if self.processed is not None and revoked:
            offsets = {tp: self.processed[tp] for tp in revoked if tp in self.processed}
            if offsets:
                await self.consumer.commit(offsets)

    async def on_partitions_assigned(self, assigned: Set[Any]) -> None:
        self.events.append(("assigned", time.monotonic(), _partitions(assigned)))
        if self.seek_to is not None:
            for tp in assigned:
                self.consumer.seek(tp, self.seek_to[tp.partition])

    def assignments(self) -> list[frozenset[int]]:
        return [parts for kind, _, parts in self.events if kind == "assigned"]


# --------------------------------------------------------------------------- the broker


async def test_broker_starts_in_milliseconds_and_advertises_its_own_port(
    kafka_broker: TansuBroker, clients: AsyncExitStack
) -> None:
    assert kafka_broker.version == f"tansu {TANSU_VERSION}"
    command = " ".join(kafka_broker.command())
    _log(f"{kafka_broker.version}: `{command}` ready in {kafka_broker.started_in:.3f} s")
    assert kafka_broker.started_in < 5
    [(node_id, host, port)] = metadata_brokers(kafka_broker.host, kafka_broker.port)
    assert (host, port) == ("127.0.0.1", kafka_broker.port)

    admin = await _started(
        clients, AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    )
    cluster = await admin.describe_cluster()
    assert cluster["cluster_id"] == kafka_broker.cluster_id
    assert [(b["node_id"], b["port"]) for b in cluster["brokers"]] == [(node_id, port)]

    # Creating a topic that exists answers TOPIC_ALREADY_EXISTS (36) per topic, no exception:
    # a source that creates its topics on start must read the per-topic codes.
    topic = await kafka_broker.create_topic(_name("exists"), partitions=4)
    again = await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    assert [(t, code) for t, code, _ in again.topic_errors] == [(topic, 36)]
    [described] = await admin.describe_topics([topic])
    assert len(described["partitions"]) == 4


# --------------------------------------------------------------------------- records


async def test_json_records_with_keys_round_trip_in_partition_order(
    kafka_broker: TansuBroker, clients: AsyncExitStack
) -> None:
    n, keys = 20_000, 100
    topic = await kafka_broker.create_topic(_name("json"), partitions=4)
    producer = await _started(clients, _json_producer(kafka_broker, linger_ms=5))
    began = time.monotonic()
    sent = [
        await producer.send(
            topic, {"n": i, "user": f"user_{i % keys}", "amount": i / 4}, key=f"user_{i % keys}"
        )
        for i in range(n)
    ]
    await producer.flush()
    produced_in = time.monotonic() - began
    acks = [future.result() for future in sent]

    consumer = await _started(
        clients,
        _consumer(
            kafka_broker,
            topic,
            key_deserializer=lambda k: k.decode(),
            value_deserializer=lambda v: json.loads(v),
        ),
    )
    records: list[Any] = []
    began = time.monotonic()

    async def pump() -> None:
        for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
            records.extend(batch)

    await _until(lambda: len(records) >= n, pump, 30, f"{n} records read back")
    consumed_in = time.monotonic() - began
    _log(
        f"{n} JSON records with keys, 4 partitions: produced in {produced_in:.2f} s "
        f"({n / produced_in:,.0f}/s), consumed in {consumed_in:.2f} s ({n / consumed_in:,.0f}/s)"
    )

    assert sorted(r.value["n"] for r in records) == list(range(n))  # each exactly once
    assert all(r.key == r.value["user"] for r in records)
    # One key, one partition (the default partitioner hashes the key bytes).
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    for r in records:
        partitions_of_key[r.key].add(r.partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())
    # Within a partition: offsets 0, 1, 2 ... with no gap, in the order produced; the acks
    # name the same offsets.
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for r in records:
        by_partition[r.partition].append(r)
    assert sorted(by_partition) == [0, 1, 2, 3]
    for part in by_partition.values():
        assert [r.offset for r in part] == list(range(len(part)))
        assert [r.value["n"] for r in part] == sorted(r.value["n"] for r in part)
    assert {(a.partition, a.offset) for a in acks} == {(r.partition, r.offset) for r in records}
    assert produced_in < 20
    assert consumed_in < 20


async def test_record_timestamps_and_headers_round_trip_but_offsets_for_times_does_not(
    kafka_broker: TansuBroker, clients: AsyncExitStack
) -> None:
    # Per-partition watermarks come from the records' own (CreateTime) timestamps, which may
    # go backwards within a partition; the broker must hand them back untouched.
    topic = await kafka_broker.create_topic(_name("time"), partitions=1)
    tp = TopicPartition(topic, 0)
    base = 1_700_000_000_000
    stamps = [base + 5000, base + 1000, base + 9000]
    test_began_ms = time.time() * 1000
    producer = await _started(
        clients, AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    )
    for stamp in stamps:
        await producer.send_and_wait(
            topic, b"v", partition=0, timestamp_ms=stamp, headers=[("trace", b"%d" % stamp)]
        )
    batch = producer.create_batch()  # several records, one batch: deltas from a base
    for stamp in (base + 100, base + 50):
        batch.append(key=None, value=b"b", timestamp=stamp)
        stamps.append(stamp)
    await (await producer.send_batch(batch, topic, partition=0))

    consumer = await _started(clients, _consumer(kafka_broker))
    consumer.assign([tp])
    records: list[Any] = []

    async def pump() -> None:
        records.extend(r for rs in (await consumer.getmany(timeout_ms=100)).values() for r in rs)

    await _until(lambda: len(records) >= 5, pump, 10, "5 records")
    assert [r.timestamp for r in records] == stamps
    assert {r.timestamp_type for r in records} == {0}  # CreateTime
    assert [r.headers for r in records[:3]] == [(("trace", b"%d" % s),) for s in stamps[:3]]

    # offsets_for_times() looks at when the broker appended, not at the records' timestamps:
    # asked for the first record at or after base + 6000 (offset 2 by the records), it
    # answers offset 0 with an append time; asked about the future, offset 0 and -1.
    found = (await consumer.offsets_for_times({tp: base + 6000}))[tp]
    assert found.offset == 0
    assert found.timestamp >= test_began_ms - 1000
    future = (await consumer.offsets_for_times({tp: 4_000_000_000_000}))[tp]
    assert (future.offset, future.timestamp) == (0, -1)


# --------------------------------------------------------------------------- groups


async def test_group_of_two_started_together_splits_four_partitions(
    kafka_broker: TansuBroker, clients: AsyncExitStack
) -> None:
    topic = await kafka_broker.create_topic(_name("split"), partitions=4)
    await _produce_per_partition(kafka_broker, clients, topic, per_partition=50)
    group = _name("g")
    consumers = [_consumer(kafka_broker, group_id=group) for _ in range(2)]
    processed: list[dict[TopicPartition, int]] = [{}, {}]
    listeners = [
        Listener(consumer=c, processed=p) for c, p in zip(consumers, processed, strict=True)
    ]
    read: list[list[tuple[int, int]]] = [[], []]

    async def pump() -> None:
        async def one(i: int) -> None:
            for tp, batch in (await consumers[i].getmany(timeout_ms=50)).items():
                read[i].extend((tp.partition, r.offset) for r in batch)
                processed[i][tp] = batch[-1].offset + 1

        await asyncio.gather(one(0), one(1))

    def split() -> bool:
        return sorted(len(c.assignment()) for c in consumers) == [2, 2]

    began = time.monotonic()
    await asyncio.gather(*(_started(clients, c) for c in consumers))
    for c, listener in zip(consumers, listeners, strict=True):
        c.subscribe([topic], listener=listener)
    took = await _until(split, pump, 20, "a 2/2 split")
    generations = max(len(listener.assignments()) for listener in listeners)
    _log(
        f"group of two started together: 2/2 after {took:.2f} s, "
        f"{generations} assignment(s) on the way"
    )
    # Started within a millisecond of each other, the two often land in the first
    # generation together (~1 s), but not always: one may get all four partitions first and
    # lose two in a second rebalance (~3 s). With commit-on-revoke that costs no duplicate.
    assert generations in (1, 2)
    await _produce_per_partition(kafka_broker, clients, topic, per_partition=50)
    await _until(lambda: sum(map(len, read)) >= 400, pump, 20, "400 records read by the group")
    assert time.monotonic() - began < 20

    owned = [_partitions(c.assignment()) for c in consumers]
    assert owned[0] | owned[1] == {0, 1, 2, 3}
    everything = read[0] + read[1]
    assert sorted(everything) == sorted((p, o) for p in range(4) for o in range(100))
    # The records produced after the split went to the owner of their partition only.
    for i in (0, 1):
        assert {p for p, o in read[i] if o >= 50} == owned[i]


async def test_manual_commits_are_read_back_by_a_restarted_consumer(
    kafka_broker: TansuBroker, clients: AsyncExitStack
) -> None:
    topic = await kafka_broker.create_topic(_name("commit"), partitions=4)
    producer = await _started(
        clients, AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    )
    # Partition 0 holds one batch of 20 records, so offset 7 lies inside a batch: the broker
    # answers a fetch from 7 with the whole batch and the client drops 0..6.
    batch = producer.create_batch()
    for i in range(20):
        batch.append(key=None, value=b"p0-%d" % i, timestamp=None)
    await (await producer.send_batch(batch, topic, partition=0))
    for part, count in ((1, 20), (2, 10), (3, 10)):
        for i in range(count):
            await producer.send_and_wait(topic, b"p%d-%d" % (part, i), partition=part)
    tps = [TopicPartition(topic, p) for p in range(4)]
    group = _name("g")

    async with AsyncExitStack() as first:
        consumer = await _started(first, _consumer(kafka_broker, topic, group_id=group))
        seen = 0

        async def pump() -> None:
            nonlocal seen
            seen += sum(map(len, (await consumer.getmany(timeout_ms=100)).values()))

        await _until(lambda: seen >= 60, pump, 15, "60 records read")
        # Commit what "the outputs" have taken, not what was read; partition 3 commits nothing.
        await consumer.commit({tps[0]: 7, tps[1]: 13, tps[2]: 10})
        assert [await consumer.committed(tp) for tp in tps] == [7, 13, 10, None]

    consumer = await _started(clients, _consumer(kafka_broker, topic, group_id=group))
    assert [await consumer.committed(tp) for tp in tps] == [7, 13, 10, None]
    first_offsets: dict[int, int] = {}
    counts: Counter[int] = Counter()

    async def pump_again() -> None:
        for tp, records in (await consumer.getmany(timeout_ms=100)).items():
            first_offsets.setdefault(tp.partition, records[0].offset)
            counts[tp.partition] += len(records)

    await _until(lambda: sum(counts.values()) >= 30, pump_again, 15, "30 records read")
    # From the committed offset where there is one (partition 2 is read to its end), from
    # auto_offset_reset="earliest" where there is none.
    assert first_offsets == {0: 7, 1: 13, 3: 0}
    assert dict(counts) == {0: 13, 1: 7, 3: 10}


async def test_commit_from_outside_the_current_generation_is_rejected(
    kafka_broker: TansuBroker, clients: AsyncExitStack
) -> None:
    topic = await kafka_broker.create_topic(_name("fence"), partitions=4)
    tp = TopicPartition(topic, 0)
    group = _name("g")
    member = await _started(clients, _consumer(kafka_broker, topic, group_id=group))
    await _until(
        lambda: bool(member.assignment()), lambda: member.getmany(timeout_ms=50), 10, "a join"
    )
    await member.commit({tp: 5})
    # A consumer of the same group that is no member (assign(), generation -1) cannot move
    # the group's offsets while the group has members: the broker fences it.
    outsider = await _started(clients, _consumer(kafka_broker, group_id=group))
    outsider.assign([tp])
    with pytest.raises(CommitFailedError):
        await outsider.commit({tp: 99})
    assert await member.committed(tp) == 5


async def test_rebalance_mid_stream_with_commit_on_revoke_loses_and_repeats_nothing(
    kafka_broker: TansuBroker, clients: AsyncExitStack
) -> None:
    topic = await kafka_broker.create_topic(_name("rebalance"), partitions=4)
    producer = await _started(
        clients, AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    )
    group = _name("g")
    first = _consumer(kafka_broker, group_id=group)
    second = _consumer(kafka_broker, group_id=group)
    processed: list[dict[TopicPartition, int]] = [{}, {}]
    listeners = [
        Listener(consumer=c, processed=p) for c, p in zip((first, second), processed, strict=True)
    ]
    read: list[list[tuple[int, int]]] = [[], []]
    produced = 0

    async def produce_chunk() -> None:
        nonlocal produced
        for _ in range(40):
            await producer.send(topic, b"%d" % produced, partition=produced % 4)
            produced += 1
        await producer.flush()

    async def poll(i: int, consumer: Any) -> None:
        for tp, records in (await consumer.getmany(timeout_ms=50)).items():
            read[i].extend((tp.partition, r.offset) for r in records)
            processed[i][tp] = records[-1].offset + 1

    await _started(clients, first)
    first.subscribe([topic], listener=listeners[0])

    async def stream_first() -> None:
        await produce_chunk()
        await poll(0, first)

    await _until(lambda: len(read[0]) >= 200, stream_first, 15, "the first consumer streaming")
    joined = time.monotonic()
    await _started(clients, second)
    second.subscribe([topic], listener=listeners[1])

    async def stream_both() -> None:
        await produce_chunk()
        await asyncio.gather(poll(0, first), poll(1, second))

    def split() -> bool:
        return sorted(len(c.assignment()) for c in (first, second)) == [2, 2]

    took = await _until(split, stream_both, 15, "a 2/2 split")
    # Drain: every record produced so far, read by one of the two.
    await _until(
        lambda: len(read[0]) + len(read[1]) >= produced,
        lambda: asyncio.gather(poll(0, first), poll(1, second)),
        15,
        "the rest",
    )
    _log(
        f"second consumer joining mid-stream ({FAST_GROUP}): split 2/2 after {took:.2f} s, "
        f"{produced} records produced while it happened"
    )
    assert time.monotonic() - joined < 15
    everything = read[0] + read[1]
    assert len(everything) == len(set(everything)) == produced  # nothing lost, nothing twice
    # The eager protocol: the first consumer gave up all four partitions and got two back.
    assert listeners[0].assignments()[0] == {0, 1, 2, 3}
    assert listeners[0].assignments()[-1] | listeners[1].assignments()[-1] == {0, 1, 2, 3}


async def _join_and_rebalance(
    broker: TansuBroker, topic: str, settings: dict[str, Any], *, leave: bool = True
) -> tuple[float, float, float | None]:
    """Seconds for: a lone consumer to be assigned; a second to make it 2/2; 4/0 after it
    leaves (if ``leave``: it costs another rebalance).

    A consumer given its topics at construction returns from ``start()`` only once it has
    been assigned partitions, so each time runs from a ``start()``.
    """
    async with AsyncExitStack() as stack:
        group = _name("g")
        first = _consumer(broker, topic, fast=False, group_id=group, **settings)
        began = time.monotonic()
        await _started(stack, first)
        join = time.monotonic() - began
        assert len(first.assignment()) == 4
        second = _consumer(broker, topic, fast=False, group_id=group, **settings)
        began = time.monotonic()
        await second.start()
        try:

            def split() -> bool:
                return sorted(len(c.assignment()) for c in (first, second)) == [2, 2]

            await _until(
                split,
                lambda: asyncio.gather(first.getmany(timeout_ms=50), second.getmany(timeout_ms=50)),
                30,
                "a 2/2 split",
            )
            rebalance = time.monotonic() - began
        finally:
            await second.stop()  # leaves the group
        if not leave:
            return join, rebalance, None
        back = await _until(
            lambda: len(first.assignment()) == 4, lambda: first.getmany(timeout_ms=50), 30, "4 back"
        )
        return join, rebalance, back


async def test_join_and_rebalance_time_follow_the_session_timeout(
    kafka_broker: TansuBroker,
) -> None:
    topic = await kafka_broker.create_topic(_name("timing"), partitions=4)
    cases: list[dict[str, Any]] = [
        FAST_GROUP,
        {"session_timeout_ms": 3000, "heartbeat_interval_ms": 1000, "rebalance_timeout_ms": 3000},
        {},  # aiokafka's defaults: session 10 s, heartbeat 3 s, rebalance = session
    ]
    # Concurrently: each group waits on the broker's timers, not on the CPU.
    # (The leave is not timed with the defaults: it would add 8 s to learn what the others show.)
    results = await asyncio.gather(
        *(_join_and_rebalance(kafka_broker, topic, case, leave=bool(case)) for case in cases)
    )
    for case, (join, rebalance, leave) in zip(cases, results, strict=True):
        session = case.get("session_timeout_ms", 10_000)
        heartbeat = case.get("heartbeat_interval_ms", 3000)
        _log(
            f"session {session} ms, heartbeat {heartbeat} ms: join {join:.2f} s, "
            f"second member to 2/2 {rebalance:.2f} s, back to 4/0 after a leave "
            + ("-" if leave is None else f"{leave:.2f} s")
        )
        # The broker answers a JoinGroup only after half the session timeout, rounded up to
        # whole seconds; a rebalance adds up to one heartbeat for the old member to notice.
        delay = math.ceil(session / 2000)
        # (Generous upper bounds: a loaded CI machine delays the client, not the timer.)
        assert delay - 0.2 <= join <= delay + 3
        assert delay - 0.2 <= rebalance <= delay + heartbeat / 1000 + 4
        assert leave is None or delay - 0.2 <= leave <= delay + heartbeat / 1000 + 4


async def test_sub_second_session_or_short_request_timeout_break_the_group(
    kafka_broker: TansuBroker,
) -> None:
    topic = await kafka_broker.create_topic(_name("broken"), partitions=4)

    async def sub_second_session() -> tuple[frozenset[int], frozenset[int]]:
        settings = {
            "session_timeout_ms": 800,
            "heartbeat_interval_ms": 200,
            "rebalance_timeout_ms": 800,
        }
        async with AsyncExitStack() as stack:
            group = _name("g")
            first = _consumer(kafka_broker, topic, fast=False, group_id=group, **settings)
            await _started(stack, first)
            second = _consumer(kafka_broker, topic, fast=False, group_id=group, **settings)
            async with asyncio.timeout(10):  # it returns once it holds partitions
                await _started(stack, second)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                await asyncio.gather(first.getmany(timeout_ms=50), second.getmany(timeout_ms=50))
            return _partitions(first.assignment()), _partitions(second.assignment())

    async def request_timeout_at_join_delay() -> frozenset[int]:
        # The JoinGroup answer comes after ~1 s; a request timeout of 800 ms gives up first,
        # every time: aiokafka retries (and logs) forever, and start() never returns.
        settings = {**FAST_GROUP, "request_timeout_ms": 800}
        async with AsyncExitStack() as stack:
            consumer = _consumer(kafka_broker, topic, group_id=_name("g"), **settings)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(4):
                    await _started(stack, consumer)
            return _partitions(consumer.assignment())

    (first, second), never = await asyncio.gather(
        sub_second_session(), request_timeout_at_join_delay()
    )
    # With a session under 1 s the second join never completes, and both consumers keep all
    # four partitions: every record would be read twice.
    assert first == second == {0, 1, 2, 3}
    assert never == frozenset()


async def test_seek_on_assignment_wins_over_committed_offsets(
    kafka_broker: TansuBroker, clients: AsyncExitStack
) -> None:
    topic = await kafka_broker.create_topic(_name("seek"), partitions=4)
    await _produce_per_partition(kafka_broker, clients, topic, per_partition=10)
    tps = [TopicPartition(topic, p) for p in range(4)]
    group = _name("g")
    # The broker holds offset 1 for every partition (committed while the group is empty,
    # which the broker allows); the sink's own store says otherwise, and must win.
    async with AsyncExitStack() as setup:
        outsider = await _started(setup, _consumer(kafka_broker, group_id=group))
        outsider.assign(tps)
        await outsider.commit(dict.fromkeys(tps, 1))
    stored = {0: 3, 1: 5, 2: 0, 3: 9}
    consumer = _consumer(kafka_broker, group_id=group)
    listener = Listener(consumer=consumer, seek_to=stored)
    await _started(clients, consumer)
    consumer.subscribe([topic], listener=listener)
    firsts: dict[int, int] = {}
    counts: Counter[int] = Counter()

    async def pump() -> None:
        for tp, records in (await consumer.getmany(timeout_ms=100)).items():
            firsts.setdefault(tp.partition, records[0].offset)
            counts[tp.partition] += len(records)

    await _until(lambda: sum(counts.values()) >= 23, pump, 15, "23 records read")
    assert firsts == stored
    assert dict(counts) == {0: 7, 1: 5, 2: 10, 3: 1}
    assert [await consumer.committed(tp) for tp in tps] == [1, 1, 1, 1]


# --------------------------------------------------------------------------- producers


@pytest.mark.parametrize(
    "options",
    [{"enable_idempotence": True}, {"transactional_id": "asyncwait-tx"}],
    ids=["idempotent", "transactional"],
)
async def test_init_producer_id_fails_so_no_idempotent_or_transactional_producer(
    kafka_broker: TansuBroker, options: dict[str, Any]
) -> None:
    # aiokafka sends InitProducerId v0, which has no producer id/epoch fields; this tansu
    # build looks them up anyway and answers UNKNOWN_SERVER_ERROR (-1), logging
    # "producer=None epoch=None". Both modes need a producer id, so neither starts.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, **options)
    began = time.monotonic()
    try:
        with pytest.raises(UnknownError) as failed:
            await producer.start()
    finally:
        await producer.stop()
    assert failed.value.errno == -1
    assert time.monotonic() - began < 5  # at once, no retries
    assert "producer=None epoch=None" in kafka_broker.log_tail(20_000)


# --------------------------------------------------------------------------- offsets


async def test_latest_offset_is_the_last_batch_base_plus_one_not_the_end(
    kafka_broker: TansuBroker, clients: AsyncExitStack
) -> None:
    topic = await kafka_broker.create_topic(_name("offsets"), partitions=1)
    tp = TopicPartition(topic, 0)
    producer = await _started(
        clients, AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    )
    probe = await _started(clients, _consumer(kafka_broker))

    async def send_batch(count: int) -> None:
        batch = producer.create_batch()
        for i in range(count):
            batch.append(key=None, value=b"%d" % i, timestamp=None)
        await (await producer.send_batch(batch, topic, partition=0))

    async def latest() -> int:
        return int((await probe.end_offsets([tp]))[tp])

    await send_batch(10)  # offsets 0..9 in one batch
    assert await latest() == 1
    for _ in range(3):  # offsets 10, 11, 12, one batch each
        await producer.send_and_wait(topic, b"single", partition=0)
    assert await latest() == 13  # right, by luck: the last batch holds one record
    await send_batch(10)  # offsets 13..22
    assert await latest() == 14
    assert (await probe.beginning_offsets([tp]))[tp] == 0

    # A fetch answer's high watermark is right: the consumer's own highwater() is the end.
    reader = await _started(clients, _consumer(kafka_broker))
    reader.assign([tp])
    got: list[int] = []

    async def pump() -> None:
        got.extend(r.offset for rs in (await reader.getmany(timeout_ms=100)).values() for r in rs)

    await _until(lambda: len(got) >= 23, pump, 10, "23 records")
    assert got == list(range(23))
    assert reader.highwater(tp) == 23
    assert await reader.position(tp) == 23

    # seek_to_end() (and auto_offset_reset="latest") trust the wrong answer: from 14, nine
    # records already read come again.
    await reader.seek_to_end(tp)
    assert await reader.position(tp) == 14
    got.clear()
    await _until(lambda: len(got) >= 9, pump, 10, "the last batch again")
    assert got == list(range(14, 23))

    # A position past the end is never OFFSET_OUT_OF_RANGE: the fetch answers nothing, the
    # reset policy is not applied (not even "none" raises) and the consumer waits silently.
    for reset in ("earliest", "none"):
        beyond = await _started(clients, _consumer(kafka_broker, auto_offset_reset=reset))
        beyond.assign([tp])
        beyond.seek(tp, 50)
        assert await beyond.getmany(timeout_ms=500) == {}
        assert await beyond.position(tp) == 50


# --------------------------------------------------------------------------- topics


async def test_topics_are_created_on_first_mention_unless_the_request_says_not_to(
    kafka_broker: TansuBroker, clients: AsyncExitStack
) -> None:
    admin = await _started(
        clients, AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    )

    async def partitions(topic: str) -> int:
        [described] = await admin.describe_topics([topic])
        return len(described["partitions"])

    by_producer, by_consumer, by_describe, refused = (
        _name(w) for w in ("prod", "cons", "desc", "no")
    )
    producer = await _started(
        clients, AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    )
    ack = await producer.send_and_wait(by_producer, b"first")
    assert ack.offset == 0
    consumer = await _started(clients, _consumer(kafka_broker, by_consumer))
    assert await consumer.getmany(timeout_ms=200) == {}
    topics = set(await admin.list_topics())  # listing all topics creates none
    assert {by_producer, by_consumer} <= topics
    assert by_describe not in topics
    # Asking about one topic by name creates it: aiokafka's metadata requests always say
    # allow_auto_topic_creation=True, so its clients cannot tell "missing" from "empty".
    assert await partitions(by_describe) == 4
    assert await partitions(by_producer) == await partitions(by_consumer) == 4

    # The broker honours the flag: with it off the answer is UNKNOWN_TOPIC_OR_PARTITION (3).
    # aiokafka has no public call that sends it; the admin client's request path does.
    answer = await admin._send_request(MetadataRequest([refused], allow_auto_topic_creation=False))
    assert [(t[0], t[1]) for t in answer.topics] == [(3, refused)]
    assert refused not in await admin.list_topics()


# --------------------------------------------------------------------------- failures


async def test_unreachable_broker_fails_start_fast_and_a_silent_one_after_request_timeout(
    own_kafka: TansuBroker, clients: AsyncExitStack
) -> None:
    def makers(servers: str) -> dict[str, Callable[[], Any]]:
        return {
            "producer": lambda: AIOKafkaProducer(
                bootstrap_servers=servers, request_timeout_ms=1000
            ),
            "consumer": lambda: AIOKafkaConsumer(
                "t", group_id="g", bootstrap_servers=servers, request_timeout_ms=1000
            ),
            "admin": lambda: AIOKafkaAdminClient(
                bootstrap_servers=servers, request_timeout_ms=1000
            ),
        }

    async def failed_start(make: Callable[[], Any]) -> float:
        client = make()
        began = time.monotonic()
        try:
            with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
                await client.start()
        finally:
            await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())
        return time.monotonic() - began

    closed = f"127.0.0.1:{free_port()}"  # nothing listens: connection refused
    for name, make in makers(closed).items():
        took = await failed_start(make)
        _log(f"{name} start, connection refused: KafkaConnectionError after {took:.3f} s")
        assert took < 1

    own_kafka.pause()  # accepts connections (the kernel does), answers nothing
    try:
        for name, make in makers(own_kafka.bootstrap_servers).items():
            took = await failed_start(make)
            _log(
                f"{name} start, broker frozen, request_timeout_ms=1000: "
                f"KafkaConnectionError after {took:.3f} s"
            )
            assert 0.9 <= took < 3
    finally:
        own_kafka.resume()


async def test_broker_lost_mid_run_fails_sends_but_not_fetches_and_blocks_commits(
    own_kafka: TansuBroker, clients: AsyncExitStack
) -> None:
    topic = await own_kafka.create_topic(_name("lost"), partitions=4)
    producer = await _started(
        clients,
        AIOKafkaProducer(bootstrap_servers=own_kafka.bootstrap_servers, request_timeout_ms=1000),
    )
    await producer.send_and_wait(topic, b"before", partition=0)
    consumer = await _started(clients, _consumer(own_kafka, group_id=_name("g")))
    listener = Listener(consumer=consumer)
    consumer.subscribe([topic], listener=listener)
    got = 0

    async def pump() -> None:
        nonlocal got
        got += sum(map(len, (await consumer.getmany(timeout_ms=100)).values()))

    await _until(lambda: got >= 1, pump, 10, "the first record")
    own_kafka.kill()
    try:
        await _while_the_broker_is_down(producer, consumer, topic)
    finally:
        own_kafka.start()
    # Back (and empty), the broker knows no member: the consumer rejoins on its own. Waiting
    # for that also keeps the teardown clean: aiokafka 0.14's Consumer.stop() re-raises the
    # CancelledError of a fetch task caught in its retry backoff (broker unreachable) and
    # then leaves its connections open.
    back = time.monotonic()
    rejoined = await _until(
        lambda: any(kind == "assigned" and at > back for kind, at, _ in listener.events),
        lambda: consumer.getmany(timeout_ms=100),
        15,
        "a rejoin after the broker came back",
    )
    _log(f"broker back: the consumer rejoined by itself after {rejoined:.2f} s")


async def _while_the_broker_is_down(producer: Any, consumer: Any, topic: str) -> None:
    began = time.monotonic()
    with pytest.raises(NodeNotReadyError):
        await producer.send_and_wait(topic, b"during", partition=0)
    send_failed_in = time.monotonic() - began
    assert send_failed_in < 5

    # Fetching raises nothing: getmany answers empty, the assignment stays. A source cannot
    # tell a dead broker from a quiet topic by polling.
    began = time.monotonic()
    while time.monotonic() - began < 1.5:
        assert await consumer.getmany(timeout_ms=100) == {}
    assert len(consumer.assignment()) == 4

    # A commit waits for a coordinator for as long as it takes: only a timeout of our own
    # bounds it.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.5):
            await consumer.commit({TopicPartition(topic, 0): 1})
    _log(
        f"broker killed: send_and_wait raised NodeNotReadyError after {send_failed_in:.2f} s "
        "(request_timeout_ms=1000); getmany stayed empty without error; commit blocked"
    )


async def test_broker_restart_forgets_topics_records_and_offsets_and_acks_into_the_void(
    own_kafka: TansuBroker, clients: AsyncExitStack
) -> None:
    topic = await own_kafka.create_topic(_name("restart"), partitions=4)
    tps = [TopicPartition(topic, p) for p in range(4)]
    producer = await _started(
        clients, AIOKafkaProducer(bootstrap_servers=own_kafka.bootstrap_servers)
    )
    for i in range(100):
        await producer.send(topic, b"%d" % i, partition=i % 4)
    await producer.flush()
    group = _name("g")
    async with AsyncExitStack() as before:
        consumer = await _started(before, _consumer(own_kafka, topic, group_id=group))
        got = 0

        async def pump() -> None:
            nonlocal got
            got += sum(map(len, (await consumer.getmany(timeout_ms=100)).values()))

        await _until(lambda: got >= 100, pump, 10, "100 records")
        await consumer.commit()
        assert [await consumer.committed(tp) for tp in tps] == [25, 25, 25, 25]

    took = own_kafka.restart()
    _log(f"restart (stop, start on the same port, memory storage): ready in {took:.3f} s")

    # The producer still knows the topic from its metadata; the broker no longer does, yet
    # acknowledges the record (offset 0, no error) and keeps it nowhere.
    ack = await producer.send_and_wait(topic, b"after", partition=0)
    assert ack.offset == 0
    admin = await _started(
        clients, AIOKafkaAdminClient(bootstrap_servers=own_kafka.bootstrap_servers)
    )
    assert topic not in await admin.list_topics()

    # The group's committed offsets are gone (committed() needs no topic metadata).
    fresh = await _started(clients, _consumer(own_kafka, group_id=group))
    assert [await fresh.committed(tp) for tp in tps] == [None, None, None, None]
    # Subscribing creates the topic anew (four empty partitions): the acknowledged record is
    # not there.
    fresh.subscribe([topic])
    await _until(
        lambda: len(fresh.assignment()) == 4, lambda: fresh.getmany(timeout_ms=100), 10, "a join"
    )
    assert await fresh.getmany(timeout_ms=500) == {}
    assert [await fresh.position(tp) for tp in tps] == [0, 0, 0, 0]
