"""The queue contract, for every output mode; synchronous, no event loop."""

from collections.abc import Hashable
from typing import Any

import pytest

from asyncwait import InternalError, OutputMode, Record, StreamElement, Watermark
from asyncwait.queues import (
    ElementQueue,
    EntryState,
    KeyOrderedQueue,
    OrderedQueue,
    QueueEntry,
    UnorderedQueue,
)

_QUEUES: dict[OutputMode, type[OrderedQueue | UnorderedQueue | KeyOrderedQueue]] = {
    OutputMode.ORDERED: OrderedQueue,
    OutputMode.UNORDERED: UnorderedQueue,
    OutputMode.KEY_ORDERED: KeyOrderedQueue,
}
_CONCURRENT = [OutputMode.UNORDERED, OutputMode.KEY_ORDERED]


@pytest.fixture(params=list(OutputMode), ids=lambda mode: mode.value)
def mode(request: pytest.FixtureRequest) -> OutputMode:
    result: OutputMode = request.param
    return result


@pytest.fixture
def queue(mode: OutputMode) -> ElementQueue:
    return _QUEUES[mode]()


def rec(value: Any, key: Hashable = None) -> QueueEntry:
    """A record entry; its key is its value unless given (distinct keys run concurrently)."""
    return QueueEntry(Record(value), value, value if key is None else key)


def wm(timestamp: int) -> QueueEntry:
    return QueueEntry.watermark(Watermark(timestamp))


def put_ok(queue: ElementQueue, *entries: QueueEntry) -> None:
    for entry in entries:
        assert queue.put(entry) is True
        if not entry.final:
            entry.transition(EntryState.RUNNING)


def finish(queue: ElementQueue, entry: QueueEntry, state: EntryState = EntryState.DONE) -> Any:
    """Complete a running entry; return what the queue says may start next."""
    entry.transition(state)
    return queue.complete(entry)


def drain(queue: ElementQueue) -> list[StreamElement]:
    popped = []
    while (entry := queue.pop_completed()) is not None:
        popped.append(entry.element())
    return popped


def held(queue: ElementQueue) -> list[StreamElement]:
    return [entry.element() for entry in queue.entries()]


# ---------------------------------------------------------------- every mode


def test_an_empty_queue_has_nothing(queue: ElementQueue) -> None:
    assert len(queue) == 0
    assert queue.pop_completed() is None
    assert held(queue) == []


def test_a_watermark_with_nothing_ahead_leaves_at_once(queue: ElementQueue) -> None:
    put_ok(queue, wm(5))
    assert len(queue) == 1
    assert drain(queue) == [Watermark(5)]
    assert len(queue) == 0


def test_len_counts_records_in_flight_completed_and_watermarks(queue: ElementQueue) -> None:
    a, b, w = rec("a"), rec("b"), wm(1)
    put_ok(queue, a, b, w)
    assert len(queue) == 3
    finish(queue, b)
    assert len(queue) == 3  # completed but not emitted still holds its slot
    finish(queue, a)
    assert drain(queue)[-1] == Watermark(1)
    assert len(queue) == 0


def test_a_record_leaves_only_once_complete(queue: ElementQueue) -> None:
    a = rec("a")
    put_ok(queue, a)
    assert queue.pop_completed() is None
    finish(queue, a)
    assert drain(queue) == [Record("a")]


def test_a_watermark_waits_for_the_records_before_it(queue: ElementQueue) -> None:
    a, b = rec("a"), rec("b")
    put_ok(queue, a, wm(3), b)
    finish(queue, b)
    assert drain(queue) == []
    finish(queue, a)
    assert drain(queue) == [Record("a"), Watermark(3), Record("b")]


def test_a_record_never_overtakes_a_watermark_before_it(queue: ElementQueue) -> None:
    a, b, c = rec("a"), rec("b"), rec("c")
    put_ok(queue, a, wm(1), b, wm(2), c)
    finish(queue, c)
    finish(queue, b)
    assert drain(queue) == []
    finish(queue, a)
    assert drain(queue) == [Record("a"), Watermark(1), Record("b"), Watermark(2), Record("c")]


def test_consecutive_watermarks_keep_their_order(queue: ElementQueue) -> None:
    a = rec("a")
    put_ok(queue, wm(1), a, wm(2), wm(3))
    assert drain(queue) == [Watermark(1)]
    finish(queue, a)
    assert drain(queue) == [Record("a"), Watermark(2), Watermark(3)]


def test_failed_entries_leave_too_and_free_their_slot(queue: ElementQueue) -> None:
    a, b = rec("a"), rec("b")
    put_ok(queue, a, b)
    finish(queue, a, EntryState.FAILED)
    finish(queue, b)
    popped = [queue.pop_completed(), queue.pop_completed()]
    assert [entry.state if entry else None for entry in popped] == [
        EntryState.FAILED,
        EntryState.DONE,
    ]
    assert len(queue) == 0


def test_entries_lists_every_held_element_in_input_order(queue: ElementQueue) -> None:
    a, b, c = rec("a"), rec("b"), rec("c")
    put_ok(queue, a, wm(1), b, c)
    finish(queue, c)
    assert held(queue) == [Record("a"), Watermark(1), Record("b"), Record("c")]
    finish(queue, a)
    queue.pop_completed()
    assert held(queue) == [Watermark(1), Record("b"), Record("c")]


def test_nothing_is_lost_or_duplicated(queue: ElementQueue) -> None:
    entries = [rec(i) if i % 4 else wm(i) for i in range(1, 21)]
    put_ok(queue, *entries)
    emitted: list[StreamElement] = []
    for entry in reversed(entries):
        if not entry.final:
            finish(queue, entry)
        emitted += drain(queue)
    emitted += drain(queue)
    assert sorted(map(repr, emitted)) == sorted(repr(e.element()) for e in entries)
    assert len(queue) == 0


def test_a_bare_value_entry_comes_back_as_a_record(queue: ElementQueue) -> None:
    entry = QueueEntry(None, 5, 5)
    put_ok(queue, entry)
    finish(queue, entry)
    assert drain(queue) == [Record(5)]


# ---------------------------------------------------------------- one mode each


def test_ordered_leaves_in_input_order() -> None:
    queue = OrderedQueue()
    a, b, c = rec("a"), rec("b"), rec("c")
    put_ok(queue, a, b, c)
    finish(queue, c)
    finish(queue, b)
    assert drain(queue) == []
    finish(queue, a)
    assert drain(queue) == [Record("a"), Record("b"), Record("c")]


@pytest.mark.parametrize("mode", _CONCURRENT, ids=lambda mode: mode.value)
def test_unordered_modes_leave_in_completion_order_within_a_segment(mode: OutputMode) -> None:
    queue = _QUEUES[mode]()
    a, b, c = rec("a"), rec("b"), rec("c")
    put_ok(queue, a, b, c)
    finish(queue, c)
    assert drain(queue) == [Record("c")]
    finish(queue, a)
    finish(queue, b)
    assert drain(queue) == [Record("a"), Record("b")]


def test_key_ordered_starts_one_entry_per_key_in_input_order() -> None:
    queue = KeyOrderedQueue()
    a1, b1, a2, a3 = rec("a1", "a"), rec("b1", "b"), rec("a2", "a"), rec("a3", "a")
    assert queue.put(a1) is True
    assert queue.put(b1) is True  # another key runs concurrently
    assert queue.put(a2) is False  # waits for a1
    assert queue.put(a3) is False
    assert queue.entries_waiting() == 2
    assert len(queue) == 4
    a1.transition(EntryState.RUNNING)
    b1.transition(EntryState.RUNNING)
    assert finish(queue, b1) is None
    assert finish(queue, a1) is a2
    a2.transition(EntryState.RUNNING)
    assert finish(queue, a2) is a3
    a3.transition(EntryState.RUNNING)
    assert finish(queue, a3) is None
    assert queue.entries_waiting() == 0
    assert drain(queue) == [Record("b1"), Record("a1"), Record("a2"), Record("a3")]


def test_key_ordered_an_entry_timed_out_while_waiting_leaves_in_key_order() -> None:
    queue = KeyOrderedQueue()
    a1, a2, a3 = rec("a1", "a"), rec("a2", "a"), rec("a3", "a")
    queue.put(a1)
    queue.put(a2)
    queue.put(a3)
    a1.transition(EntryState.RUNNING)
    # a2 times out while waiting for its key; its timeout() outcome is ready first.
    queue.withdraw(a2)
    a2.transition(EntryState.TIMING_OUT)
    assert finish(queue, a2) is None
    assert drain(queue) == []  # a2 may not overtake a1, the key's earlier entry
    assert finish(queue, a1) is a3  # a2 is skipped: it is never started
    assert drain(queue) == [Record("a1"), Record("a2")]
    a3.transition(EntryState.RUNNING)
    assert finish(queue, a3) is None
    assert drain(queue) == [Record("a3")]
    assert len(queue) == 0


def test_key_ordered_an_entry_timing_out_in_line_keeps_the_key_busy() -> None:
    queue = KeyOrderedQueue()
    a1, a2, a3 = rec("a1", "a"), rec("a2", "a"), rec("a3", "a")
    queue.put(a1)
    queue.put(a2)
    queue.put(a3)
    a1.transition(EntryState.RUNNING)
    queue.withdraw(a2)
    a2.transition(EntryState.TIMING_OUT)  # its async timeout() hook is still running
    assert finish(queue, a1) is None  # a3 must wait for a2's hook
    assert finish(queue, a2) is a3
    a3.transition(EntryState.RUNNING)
    finish(queue, a3)
    assert drain(queue) == [Record("a1"), Record("a2"), Record("a3")]


def test_key_ordered_withdraw_of_a_running_entry_is_a_bug() -> None:
    queue = KeyOrderedQueue()
    a1 = rec("a1", "a")
    queue.put(a1)
    with pytest.raises(InternalError):
        queue.withdraw(a1)


# ---------------------------------------------------------------- entry lifecycle


def test_a_watermark_entry_is_born_done() -> None:
    entry = wm(7)
    assert entry.state is EntryState.DONE
    assert entry.final
    assert entry.element() == Watermark(7)


@pytest.mark.parametrize(
    "path",
    [
        [EntryState.RUNNING, EntryState.DONE],
        [EntryState.RUNNING, EntryState.FAILED],
        [EntryState.RUNNING, EntryState.RETRY_WAIT, EntryState.RUNNING, EntryState.DONE],
        [EntryState.RUNNING, EntryState.RETRY_WAIT, EntryState.TIMING_OUT, EntryState.FAILED],
        [EntryState.RUNNING, EntryState.TIMING_OUT, EntryState.DONE],
        [EntryState.TIMING_OUT, EntryState.DONE],
    ],
    ids=lambda path: "-".join(state.name for state in path),
)
def test_legal_transitions(path: list[EntryState]) -> None:
    entry = rec("a")
    for state in path:
        entry.transition(state)
    assert entry.state is path[-1]
    assert entry.final


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], EntryState.DONE),
        ([], EntryState.RETRY_WAIT),
        ([EntryState.RUNNING, EntryState.DONE], EntryState.FAILED),
        ([EntryState.RUNNING, EntryState.DONE], EntryState.RUNNING),
        ([EntryState.RUNNING, EntryState.FAILED], EntryState.TIMING_OUT),
        ([EntryState.TIMING_OUT], EntryState.RUNNING),
        ([EntryState.RUNNING, EntryState.RETRY_WAIT], EntryState.DONE),
    ],
)
def test_illegal_transitions_are_internal_errors(
    path: list[EntryState], illegal: EntryState
) -> None:
    entry = rec("a")
    for state in path:
        entry.transition(state)
    with pytest.raises(InternalError, match="illegal entry transition"):
        entry.transition(illegal)
    assert entry.state is (path[-1] if path else EntryState.WAITING)
