"""A hypothesis state machine over every element queue (synchronous, no event loop)."""

from collections import Counter
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from asyncwait import OutputMode, Record, StreamElement, Watermark
from asyncwait.queues import (
    ElementQueue,
    EntryState,
    KeyOrderedQueue,
    OrderedQueue,
    QueueEntry,
    UnorderedQueue,
)
from tests.property.checks import check_order

_QUEUES: dict[OutputMode, type[OrderedQueue | UnorderedQueue | KeyOrderedQueue]] = {
    OutputMode.ORDERED: OrderedQueue,
    OutputMode.UNORDERED: UnorderedQueue,
    OutputMode.KEY_ORDERED: KeyOrderedQueue,
}


class QueueMachine(RuleBasedStateMachine):
    """Model: which entries run, which wait in their key's line, and what may be emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = OutputMode.ORDERED
        self.queue: ElementQueue = OrderedQueue()
        self.count = 0
        self.inputs: list[StreamElement] = []
        self.outputs: list[StreamElement] = []
        self.running: list[QueueEntry] = []  # started, an attempt in flight
        self.timing_out: list[QueueEntry] = []  # deadline passed, timeout() hook running
        self.lines: dict[Any, list[QueueEntry]] = {}  # KEY_ORDERED: per key, input order
        self.keys: dict[StreamElement, Any] = {}

    @initialize(mode=st.sampled_from(list(OutputMode)))
    def start(self, mode: OutputMode) -> None:
        self.mode = mode
        self.queue = _QUEUES[mode]()

    def _in_line(self, entry: QueueEntry) -> bool:
        return any(e is entry for e in self.lines.get(entry.key, []))

    def _busy(self, key: Any) -> bool:
        active = [e for e in self.running + self.timing_out if not self._in_line(e)]
        return any(e.key == key for e in active) or bool(self.lines.get(key))

    def _next_in_line(self, key: Any) -> QueueEntry | None:
        """What the queue must start when the key's active entry completes."""
        line = self.lines.get(key, [])
        while line:
            nxt = line.pop(0)
            if nxt.final:
                continue  # timed out earlier; it may leave now
            return nxt if nxt.state is EntryState.WAITING else None
        return None

    def _complete(self, entry: QueueEntry) -> None:
        expected = None if self._in_line(entry) else self._next_in_line(entry.key)
        nxt = self.queue.complete(entry)
        assert nxt is expected
        if nxt is not None:
            nxt.transition(EntryState.RUNNING)
            self.running.append(nxt)

    @rule(key=st.integers(0, 2))
    def put_record(self, key: int) -> None:
        self.count += 1
        entry = QueueEntry(Record(self.count, self.count), self.count, key)
        busy = self._busy(key)
        start = self.queue.put(entry)
        self.inputs.append(entry.element())
        self.keys[entry.element()] = key
        if self.mode is OutputMode.KEY_ORDERED:
            assert start is not busy
        else:
            assert start
        if start:
            entry.transition(EntryState.RUNNING)
            self.running.append(entry)
        else:
            self.lines.setdefault(key, []).append(entry)

    @rule()
    def put_watermark(self) -> None:
        self.count += 1
        assert self.queue.put(QueueEntry.watermark(Watermark(self.count)))
        self.inputs.append(Watermark(self.count))

    @precondition(lambda self: self.running)
    @rule(data=st.data(), failed=st.booleans())
    def complete(self, data: st.DataObject, failed: bool) -> None:
        entry = data.draw(st.sampled_from(self.running))
        self.running.remove(entry)
        entry.transition(EntryState.FAILED if failed else EntryState.DONE)
        self._complete(entry)

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def time_out_running(self, data: st.DataObject) -> None:
        entry = data.draw(st.sampled_from(self.running))
        self.running.remove(entry)
        entry.transition(EntryState.TIMING_OUT)
        self.timing_out.append(entry)

    @precondition(
        lambda self: any(e.state is EntryState.WAITING for v in self.lines.values() for e in v)
    )
    @rule(data=st.data())
    def time_out_while_waiting(self, data: st.DataObject) -> None:
        waiting = [e for line in self.lines.values() for e in line if e.state is EntryState.WAITING]
        entry = data.draw(st.sampled_from(waiting))
        self.queue.withdraw(entry)
        entry.transition(EntryState.TIMING_OUT)
        self.timing_out.append(entry)

    @precondition(lambda self: self.timing_out)
    @rule(data=st.data(), failed=st.booleans())
    def finish_timing_out(self, data: st.DataObject, failed: bool) -> None:
        entry = data.draw(st.sampled_from(self.timing_out))
        self.timing_out.remove(entry)
        entry.transition(EntryState.FAILED if failed else EntryState.DONE)
        self._complete(entry)

    @rule()
    def pop(self) -> None:
        while (entry := self.queue.pop_completed()) is not None:
            assert entry.final
            self.outputs.append(entry.element())

    @invariant()
    def holds_exactly_the_unemitted_inputs_in_input_order(self) -> None:
        emitted = set(self.outputs)
        assert [e.element() for e in self.queue.entries()] == [
            x for x in self.inputs if x not in emitted
        ]
        assert len(self.queue) == len(self.inputs) - len(self.outputs)

    @invariant()
    def one_active_entry_per_key(self) -> None:
        if self.mode is OutputMode.KEY_ORDERED:
            active = [e for e in self.running + self.timing_out if not self._in_line(e)]
            keys = Counter(entry.key for entry in active)
            assert all(n == 1 for n in keys.values())

    @invariant()
    def emits_in_a_legal_order(self) -> None:
        check_order(self.mode, self.inputs, self.outputs, self.keys.get, complete=False)

    def teardown(self) -> None:
        while self.running or self.timing_out:
            pool = self.running or self.timing_out
            entry = pool.pop()
            entry.transition(EntryState.DONE)
            self._complete(entry)
        self.pop()
        assert len(self.queue) == 0
        check_order(self.mode, self.inputs, self.outputs, self.keys.get, complete=True)


QueueMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestQueueMachine = QueueMachine.TestCase
