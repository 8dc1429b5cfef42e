"""The element queues behind each output mode: plain synchronous data structures.

A queue holds one :class:`QueueEntry` per admitted element until the entry is emitted. It
decides *what* may be invoked and *what* may be emitted; it never awaits, starts tasks or
reads a clock, so it can be tested without an event loop. The operator owns the I/O.

    put(entry)        admit an entry; True when the entry may be invoked right away
    can_start(key)    whether an entry of ``key`` admitted now would be invoked right away
    complete(entry)   the entry reached a final state; returns an entry that may now start
    pop_completed()   the next entry that may be emitted, or None
    entries()         every held entry in input order (for snapshots)
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Hashable, Iterator
from typing import Any, Protocol, final

from .elements import Record, StreamElement, Watermark
from .errors import InternalError

__all__ = (
    "ElementQueue",
    "EntryState",
    "KeyOrderedQueue",
    "OrderedQueue",
    "QueueEntry",
    "UnorderedQueue",
)


class EntryState(enum.Enum):
    """Where an entry is in its life; :meth:`QueueEntry.transition` allows only these moves.

    ::

        WAITING ──► RUNNING ──► DONE
           │        │  ▲  │
           │        ▼  │  └──► FAILED
           │     RETRY_WAIT
           │        │
           └────────┴──► TIMING_OUT ──► DONE | FAILED
    """

    WAITING = "waiting"  # admitted; its key is busy (KEY_ORDERED only)
    RUNNING = "running"  # an attempt is in flight
    RETRY_WAIT = "retry-wait"  # between attempts, backoff timer armed
    TIMING_OUT = "timing-out"  # deadline passed; the timeout() hook is running
    DONE = "done"  # final: outputs ready to emit (watermarks start here)
    FAILED = "failed"  # final: emits nothing, frees its slot

    # Members are singletons compared by identity; Enum's default hash is Python code and
    # runs several times per element on the hot path.
    __hash__ = object.__hash__


_MOVES: dict[EntryState, frozenset[EntryState]] = {
    EntryState.WAITING: frozenset({EntryState.RUNNING, EntryState.TIMING_OUT}),
    EntryState.RUNNING: frozenset(
        {EntryState.DONE, EntryState.FAILED, EntryState.RETRY_WAIT, EntryState.TIMING_OUT}
    ),
    EntryState.RETRY_WAIT: frozenset({EntryState.RUNNING, EntryState.TIMING_OUT}),
    EntryState.TIMING_OUT: frozenset({EntryState.DONE, EntryState.FAILED}),
    EntryState.DONE: frozenset(),
    EntryState.FAILED: frozenset(),
}
_FINAL = frozenset({EntryState.DONE, EntryState.FAILED})


@final
class QueueEntry:
    """One admitted element and everything the operator tracks for it.

    Users never build entries; the operator does, one per admitted element.
    """

    __slots__ = (
        "admitted",
        "attempt",
        "deadline",
        "final",
        "handle",
        "input",
        "key",
        "outputs",
        "segment",
        "seq",
        "state",
        "task",
        "value",
    )

    def __init__(
        self,
        element: StreamElement | None,
        value: Any = None,
        key: Hashable = None,
        state: EntryState = EntryState.WAITING,
    ) -> None:
        # `input` is the element as admitted (None when the operator was fed bare values);
        # `value` is what the function is called with.
        self.input = element
        self.value = value
        self.key = key
        self.state = state
        # final is state in _FINAL, kept as a field because the emit path reads it per entry.
        self.final = state in _FINAL
        self.outputs: tuple[Any, ...] | list[Any] = ()
        self.attempt = 0  # attempts started so far; results of older attempts are late
        self.deadline = 0.0  # loop time after which the element times out
        self.task: Any = None  # the running attempt or timeout-hook task
        self.handle: Any = None  # the armed retry timer
        self.segment: _Segment | None = None  # UNORDERED/KEY_ORDERED: the segment holding it
        self.admitted = 0.0  # loop time of admission when sampled for latency, else 0.0
        self.seq = 0  # admission number: input order across segments

    @classmethod
    def watermark(cls, watermark: Watermark) -> QueueEntry:
        """Return a completed entry for ``watermark``."""
        return cls(watermark, None, None, EntryState.DONE)

    def element(self) -> StreamElement:
        """Return the admitted element (a bare value comes back as a :class:`Record`)."""
        return Record(self.value) if self.input is None else self.input

    def transition(self, new: EntryState) -> None:
        """Move to ``new``, or raise :class:`InternalError` when the move is illegal."""
        if new not in _MOVES[self.state]:
            msg = (
                f"illegal entry transition {self.state.name} -> {new.name} for {self.input!r}"
                " (a bug in asyncwait; please report it)"
            )
            raise InternalError(msg)
        self.state = new
        self.final = new in _FINAL

    def __repr__(self) -> str:
        return f"<QueueEntry {self.state.name} attempt={self.attempt} {self.input!r}>"


class ElementQueue(Protocol):
    """What the operator needs from a queue; one implementation per output mode."""

    def __len__(self) -> int:
        """Entries held: admitted and not yet emitted, watermarks included."""
        ...

    def put(self, entry: QueueEntry) -> bool:
        """Admit ``entry``; return True when a record entry may be invoked now."""
        ...

    def complete(self, entry: QueueEntry) -> QueueEntry | None:
        """Note that ``entry`` became final; return an entry that may start now, if any."""
        ...

    def pop_completed(self) -> QueueEntry | None:
        """Remove and return the next entry that may be emitted, or None."""
        ...

    def withdraw(self, entry: QueueEntry) -> None:
        """Note that ``entry`` timed out before its turn: it must never start."""
        ...

    def can_start(self, key: Hashable) -> bool:
        """True when a record of ``key`` admitted now would be invoked at once."""
        ...

    def can_pass(self, key: Hashable) -> bool:
        """True when a record of ``key`` completed at admission could leave at once.

        That is, when it would be the next entry to leave: nothing it must wait for is held.
        """
        ...

    def entries(self) -> Iterator[QueueEntry]:
        """Yield every held entry in input order."""
        ...


@final
class OrderedQueue:
    """ORDERED: entries leave strictly in input order, watermarks included.

    >>> q = OrderedQueue()
    >>> a, b = QueueEntry(Record(1), 1), QueueEntry(Record(2), 2)
    >>> q.put(a), q.put(b)
    (True, True)
    >>> b.transition(EntryState.RUNNING); b.transition(EntryState.DONE); q.complete(b)
    >>> q.pop_completed() is None  # b waits for a
    True
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        # Invariant: input order; only the head may be popped, and only once final.
        self._entries: deque[QueueEntry] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, entry: QueueEntry) -> bool:
        self._entries.append(entry)
        return True

    def complete(self, entry: QueueEntry) -> QueueEntry | None:
        return None

    def withdraw(self, entry: QueueEntry) -> None:
        return None

    def pop_completed(self) -> QueueEntry | None:
        entries = self._entries
        if entries and entries[0].final:
            return entries.popleft()
        return None

    def can_start(self, key: Hashable) -> bool:
        return True

    def can_pass(self, key: Hashable) -> bool:
        return not self._entries

    def entries(self) -> Iterator[QueueEntry]:
        return iter(self._entries)

    def __repr__(self) -> str:
        head = self._entries[0].state.name if self._entries else "-"
        return f"<OrderedQueue held={len(self._entries)} head={head}>"


@final
class _Segment:
    """A run of records between two watermarks, or a single watermark (UNORDERED)."""

    __slots__ = ("completed", "entries", "open")

    def __init__(self, accepts_records: bool) -> None:
        # Invariant: `entries` is every un-emitted entry of the segment in input order;
        # `completed` is the final ones among them, in completion order (= emit order).
        self.entries: dict[QueueEntry, None] = {}
        self.completed: deque[QueueEntry] = deque()
        self.open = accepts_records  # False for a watermark segment


class UnorderedQueue:
    """UNORDERED: records leave in completion order, but never across a watermark.

    Entries live in segments separated by watermarks; only the head segment may emit, so a
    record never overtakes a watermark that preceded it, nor a watermark a record.

    >>> q = UnorderedQueue()
    >>> a, b = QueueEntry(Record(1), 1), QueueEntry(Record(2), 2)
    >>> _ = q.put(a), q.put(b)
    >>> b.transition(EntryState.RUNNING); b.transition(EntryState.DONE); q.complete(b)
    >>> q.pop_completed() is b  # completion order
    True
    """

    __slots__ = ("_held", "_segments")

    def __init__(self) -> None:
        self._segments: deque[_Segment] = deque()
        self._held = 0

    def __len__(self) -> int:
        return self._held

    def put(self, entry: QueueEntry) -> bool:
        segments = self._segments
        if entry.final:  # a watermark: a segment of its own, already completed
            segment = _Segment(accepts_records=False)
            segment.completed.append(entry)
            segments.append(segment)
        else:
            if segments and segments[-1].open:
                segment = segments[-1]
            else:
                segment = _Segment(accepts_records=True)
                segments.append(segment)
        segment.entries[entry] = None
        entry.segment = segment
        self._held += 1
        return True

    def complete(self, entry: QueueEntry) -> QueueEntry | None:
        segment = entry.segment
        if segment is None:
            msg = f"completed an entry that is not queued: {entry!r}"
            raise InternalError(msg)
        segment.completed.append(entry)
        return None

    def withdraw(self, entry: QueueEntry) -> None:
        return None

    def pop_completed(self) -> QueueEntry | None:
        segments = self._segments
        while segments:
            head = segments[0]
            if head.completed:
                entry = head.completed.popleft()
                del head.entries[entry]
                entry.segment = None
                self._held -= 1
                if not head.entries and (len(segments) > 1 or not head.open):
                    segments.popleft()
                return entry
            if head.entries or len(segments) == 1:
                return None
            segments.popleft()  # an empty record segment before a watermark
        return None

    def can_start(self, key: Hashable) -> bool:
        return True

    def can_pass(self, key: Hashable) -> bool:
        # No watermark held ahead, and no completed record waiting to leave.
        segments = self._segments
        if not segments:
            return True
        head = segments[0]
        return len(segments) == 1 and head.open and not head.completed

    def entries(self) -> Iterator[QueueEntry]:
        for segment in self._segments:
            yield from segment.entries

    def __repr__(self) -> str:
        return f"<{type(self).__name__} held={self._held} segments={len(self._segments)}>"


@final
class KeyOrderedQueue(UnorderedQueue):
    """KEY_ORDERED: as UNORDERED, and records of one key run one at a time, in input order.

    >>> q = KeyOrderedQueue()
    >>> a, b = QueueEntry(Record(1), 1, "k"), QueueEntry(Record(2), 2, "k")
    >>> q.put(a), q.put(b)  # b waits for a
    (True, False)
    >>> a.transition(EntryState.RUNNING); a.transition(EntryState.DONE)
    >>> q.complete(a) is b
    True
    """

    __slots__ = ("_active", "_waiting")

    def __init__(self) -> None:
        super().__init__()
        # Invariant: _active[k] is the one entry of key k that may run (not yet final);
        # _waiting[k] holds the later entries of k, in input order (including those that
        # timed out before their turn), and exists only when non-empty.
        self._active: dict[Hashable, QueueEntry] = {}
        self._waiting: dict[Hashable, deque[QueueEntry]] = {}

    def put(self, entry: QueueEntry) -> bool:
        super().put(entry)
        if entry.final:
            return True
        key = entry.key
        if key in self._active:
            waiting = self._waiting.get(key)
            if waiting is None:
                waiting = self._waiting[key] = deque()
            waiting.append(entry)
            return False
        self._active[key] = entry
        return True

    def complete(self, entry: QueueEntry) -> QueueEntry | None:
        key = entry.key
        if self._active.get(key) is not entry:
            # Timed out while waiting (see withdraw): it keeps its place in the key's line
            # and may leave only after the key's earlier entries, so the key's outputs stay
            # in input order even when its timeout() hook finishes first.
            return None
        super().complete(entry)
        waiting = self._waiting.get(key)
        while waiting:
            nxt = waiting.popleft()
            if nxt.final:
                super().complete(nxt)  # timed out while waiting; now its turn to leave
                continue
            self._active[key] = nxt
            if not waiting:
                del self._waiting[key]
            # A timed-out entry whose timeout() hook still runs is never started; the key
            # stays busy until the hook completes it.
            return nxt if nxt.state is EntryState.WAITING else None
        if waiting is not None:
            del self._waiting[key]
        del self._active[key]
        return None

    def can_start(self, key: Hashable) -> bool:
        return key not in self._active

    def can_pass(self, key: Hashable) -> bool:
        return key not in self._active and key not in self._waiting and super().can_pass(key)

    def withdraw(self, entry: QueueEntry) -> None:
        # The entry stays in its key's line (never to be started): see complete().
        waiting = self._waiting.get(entry.key)
        if waiting is None or entry not in waiting:
            msg = f"withdrew an entry that is not waiting for its key: {entry!r}"
            raise InternalError(msg)

    def entries_waiting(self) -> int:
        """Return how many entries wait for their key."""
        return sum(len(w) for w in self._waiting.values())
