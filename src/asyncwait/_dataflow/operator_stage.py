"""The stage of an async operator: chained steps, then the operator (private).

Feeding: each batch from the input channel goes through the stage's steps, then into the
operator with ``offer`` (no await while it has room; ``process_element`` only for the one
element that does not fit). Emission is synchronous (``open(sync_emit=True)``): an input's
outputs are pushed in one run, so a checkpoint barrier never falls between them, and
backpressure comes from the feeding side, which stops while the output channel is full.
"""

from __future__ import annotations

from typing import Any, Final, final

from ..elements import Record, StreamElement, Watermark
from ..errors import BadInputError
from ..operator import AsyncWaitOperator
from ..sources._base import SourcedRecord, plain
from .channel import Barrier, Channel
from .plan import AsyncSpec, Pipeline
from .stages import Host, Stage, line_of
from .steps import Rejected, Step

__all__ = ("OperatorStage", "dead_lettered", "rejection", "skipped")

_NONE: Final[list[StreamElement]] = []  # an empty default, never modified

# Where an operator stage's run() waits (see OperatorStage._barrier_arrived).
_IDLE, _ROOM, _FEEDING, _ENDING = "idle", "room", "feeding", "ending"


def _saved(element: StreamElement) -> StreamElement:
    """``element`` as a checkpoint keeps it: a record read from a source keeps its line."""
    if isinstance(element, Watermark) or type(element) is SourcedRecord:
        return element
    return plain(element)


def _without_tracebacks(error: BaseException) -> None:
    # The errors file needs the message, not the traceback. Kept, the traceback's frames
    # (the operator's, the stage's: the whole input batch) would hold the element's queue
    # entry, which holds the marker: a cycle per bad element, each pinning a batch of
    # records until the garbage collector runs (+16 MB peak RSS on the demo job).
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        exc.__traceback__ = None
        pending += (exc.__cause__, exc.__context__)


def rejection(element: StreamElement, error: BadInputError) -> tuple[Any, ...]:
    """The outputs of an element whose async function said its input was bad."""
    assert isinstance(element, Record)  # only records are called
    _without_tracebacks(error)
    return (Rejected(element.value, error, line_of(element)),)


def dead_lettered(element: StreamElement, error: BaseException, attempts: int) -> tuple[Any, ...]:
    """The outputs of an element whose call finally failed, with ``on_error="dead_letter"``."""
    assert isinstance(element, Record)
    _without_tracebacks(error)
    return (Rejected(element.value, error, line_of(element), "lookup_failed", attempts),)


def skipped(element: StreamElement, error: BaseException, attempts: int) -> tuple[Any, ...]:
    """The outputs of an element whose call finally failed, with ``on_error="skip"``."""
    assert isinstance(element, Record)
    _without_tracebacks(error)
    return (Rejected(element.value, error, line_of(element), "skipped", attempts),)


@final
class OperatorStage(Stage):
    def __init__(
        self,
        job: Host,
        pipeline: Pipeline,
        index: int,
        steps: list[Step],
        spec: AsyncSpec,
        inp: Channel,
        out: Channel,
        sourced: bool,
    ) -> None:
        super().__init__(job, pipeline, spec.name, index)
        self.steps = steps
        self.inp = inp
        self.out = out
        self.op: AsyncWaitOperator[Any, Any] = spec.operator(spec.function)
        self.sourced = sourced
        # From the checkpoint resumed: the operator's inputs (after this stage's steps), and
        # what waited in the input channel (before them).
        self.restored: list[StreamElement] = []
        self.restored_input: list[StreamElement] = []
        # Where run() waits, for a barrier that arrives meanwhile (see _barrier_arrived).
        self._phase = _IDLE
        self._batch: list[StreamElement] = []  # the batch of the _ROOM and _FEEDING phases
        if job.coordinator is not None:
            inp.on_barrier = self._barrier_arrived

    def emit(self, element: StreamElement) -> None:
        # Never awaitable: the operator then emits each entry's outputs in one synchronous
        # run, so a barrier can never fall between two outputs of one input (which would
        # duplicate the first ones on restore). Backpressure comes from run() instead, which
        # stops feeding the operator while the channel is full: the channel then holds at
        # most its limit plus the outputs of `capacity` entries.
        if type(element) is not Watermark:
            value = element.value  # type: ignore[union-attr]
            if type(value) is Rejected:
                self.job.reject_output(self.pipeline, self.name, value, self.index)
                return
        self.out.push(element)

    def restore(self, state: Any) -> None:
        for step, saved in zip(self.steps, state["steps"], strict=True):
            step.restore(saved)
        self.restored = self._sourced(state["elements"])
        self.restored_input = self._sourced(state["input"])

    def _sourced(self, elements: list[StreamElement]) -> list[StreamElement]:
        if not self.sourced:
            return list(elements)
        # Saved SourcedRecords keep their lines: a restored element rejected again is
        # reported with the line it came from.
        return [
            e
            if isinstance(e, Watermark | SourcedRecord)
            else SourcedRecord(e.value, e.timestamp, None)
            for e in elements
        ]

    def _snapshot(
        self, unfed: list[StreamElement] = _NONE, waiting: list[StreamElement] = _NONE
    ) -> Any:
        """The stage's state for a checkpoint.

        The operator's inputs not fully emitted, then ``unfed`` (after the steps); and
        ``waiting`` (before them), after any restored input not processed yet.
        """
        inputs = [*self.op.snapshot_state(), *unfed]
        return {
            "steps": [step.snapshot() for step in self.steps],
            "elements": [_saved(e) for e in inputs],
            "input": [_saved(e) for e in (*self.restored_input, *waiting)],
        }

    def final_state(self) -> Any:
        return self._snapshot()

    def _barrier_arrived(self) -> None:
        """A barrier entered the input channel: take it now if run() is stuck waiting.

        While run() waits for room downstream, for the operator to admit an element, or for
        the operator to finish, it does not read its input, and the barrier would wait
        behind a full operator: the checkpoint would wait for the backpressure to ease
        (and a stop for a slow external system). Instead the barrier is taken at once, as
        in Flink's unaligned checkpoints: the state then also holds the rest of the current
        batch and the elements still in the channel ahead of the barrier, replayed on
        restore. Run on the loop between two steps of run(), so nothing moves meanwhile.
        """
        phase = self._phase
        if phase is _IDLE:
            return  # run() waits in get(): the barrier comes out there, in order
        if phase is _FEEDING:
            blocked = self.op.waiting_element  # already part of its snapshot
            batch = self._batch
            at = next((i for i, e in enumerate(batch) if e is blocked), None)
            if at is None:
                return  # not waiting for admission after all: get() delivers it
            unfed = batch[at + 1 :]
        elif phase is _ROOM:
            unfed = self._batch
        else:  # _ENDING: the input has ended, so nothing can wait in it
            unfed = []
        taken = self.inp.take_barrier()
        if taken is None:
            return
        waiting, barrier = taken
        coordinator = self.job.coordinator
        assert coordinator is not None  # only a checkpointing job sends barriers
        self.acknowledge(coordinator, barrier.id, self._snapshot(unfed, waiting))
        self.out.push_barrier(barrier)

    async def run(self) -> None:
        inp, steps, op, out = self.inp, self.steps, self.op, self.out
        coordinator = self.job.coordinator
        for step in steps:
            step.start(inp.wake)
        try:
            if self.restored:
                # The inputs in flight at the checkpoint come before anything read after it.
                batch, self.restored = self.restored, []
                await self._feed_batch(batch)
            if self.restored_input:
                batch, self.restored_input = self.restored_input, []
                for step in steps:
                    batch = step.process(batch)
                await self._feed_batch(batch)
            while True:
                self._phase = _IDLE
                got = await inp.get()
                if got is None:
                    break
                if type(got) is Barrier:
                    assert coordinator is not None  # only a checkpointing job sends barriers
                    self.acknowledge(coordinator, got.id, self._snapshot())
                    out.push_barrier(got)
                    continue
                batch = got
                for step in steps:
                    batch = step.process(batch)
                await self._feed_batch(batch)
            self._phase = _ENDING
            await op.end_input()
        finally:
            self._phase = _IDLE
            self._batch = []
            for step in steps:
                step.stop()
        self.finished = True
        out.close()

    async def _feed_batch(self, batch: list[StreamElement]) -> None:
        self._batch = batch
        if (room := self.out.room()) is not None:
            self._phase = _ROOM
            await room
        self._phase = _FEEDING
        await self._feed(batch)

    async def _feed(self, batch: list[StreamElement]) -> None:
        op = self.op
        offer, process_element, process_watermark = (
            op.offer,
            op.process_element,
            op.process_watermark,
        )
        elements: list[Any] = batch
        for element in elements:
            if type(element) is Watermark:
                await process_watermark(element)
                continue
            if not offer(element):
                await process_element(element)  # full: wait for a slot
