"""The stages of a running pipeline: source, sink, and what every stage shares (private).

Stages of one pipeline (``a``: async operator; ``s``: chained stateless steps)::

    SourceStage ─ch0─► OperatorStage(s0, a0) ─ch1─► ... ─chN─► SinkStage(sN, sink)

Each stage runs as one task of the job; channels carry batches between them. A stage
talks to its job through the :class:`Host` protocol (counters, bad input, the coordinator)
and to the coordinator through the coordinator's declared ``StageView``.
"""

from __future__ import annotations

from operator import countOf
from typing import Any, Protocol, final

from .._checkpoint.coordinator import Coordinator
from .._rejects import Reject
from ..elements import Record, StreamElement, Watermark
from ..errors import AsyncFunctionError, BadInputError, ConfigError
from ..sinks import Sink
from ..sources import Source
from ..sources._base import SourcedRecord, plain
from ..watermarks import MAX_TIMESTAMP
from .channel import Barrier, Channel
from .plan import Pipeline
from .steps import Rejected, Step

__all__ = ("Host", "SinkStage", "SourceStage", "Stage", "as_sourced", "line_of")

FINAL = Watermark(MAX_TIMESTAMP)


class Host(Protocol):
    """What a stage needs from the job it runs in."""

    buffer_size: int  # elements per batch between stages
    coordinator: Coordinator | None  # None: the job takes no checkpoints
    events_in: int  # the job's counters, kept by the stages
    events_out: int

    def rejecter(self, pipeline: Pipeline, operator: str | None, stage: int) -> Reject:
        """The function that routes a bad element of ``operator`` (in ``stage``) aside."""
        ...

    def reject_output(
        self, pipeline: Pipeline, operator: str, rejected: Rejected, stage: int
    ) -> None:
        """An async function (in ``stage``) said its input was bad: route the input aside."""
        ...


def line_of(record: Record[Any] | None) -> int | None:
    """The source line of ``record``, when it is known."""
    return record.line if isinstance(record, SourcedRecord) else None


class Stage:
    """One task of a running pipeline."""

    inp: Channel  # where it takes its elements from (every stage but a source)

    def __init__(self, job: Host, pipeline: Pipeline, name: str, index: int) -> None:
        self.job = job
        self.pipeline = pipeline
        self.name = name
        self.index = index  # its place in the job: checkpoints key states by it
        self.finished = False  # ran to its end (set in the same step as closing its output)
        # The last checkpoint whose barrier it passed: what it reports to the errors file
        # from then on belongs to the next checkpoint.
        self.passed = 0
        # Records a source read (malformed lines included) or a sink wrote, and that count
        # at each barrier it passed: a checkpoint's totals count what came before it only.
        self.records = 0
        self._at_barrier: dict[int, int] = {}

    def records_at(self, checkpoint_id: int) -> int:
        """:attr:`records` when the barrier of ``checkpoint_id`` passed (its end: all)."""
        at = self._at_barrier
        for older in [n for n in at if n < checkpoint_id]:
            del at[older]  # an aborted checkpoint's
        return at.pop(checkpoint_id, self.records)

    async def run(self) -> None:
        raise NotImplementedError

    def restore(self, state: Any) -> None:
        """Take the state this stage saved in the checkpoint the job resumes from."""

    def acknowledge(self, coordinator: Coordinator, checkpoint_id: int, state: Any) -> None:
        """Pass the barrier of ``checkpoint_id``, having saved ``state`` for it."""
        self.passed = checkpoint_id
        self._at_barrier[checkpoint_id] = self.records
        coordinator.ack(checkpoint_id, self.index, state)

    def final_state(self) -> Any:
        """The state to save for a checkpoint taken after this stage ended."""
        raise NotImplementedError

    async def drained_state(self, checkpoint_id: int) -> Any:
        """Like :meth:`final_state`, for the sink stage (its sink must pre-commit)."""
        return self.final_state()

    def nudge(self) -> None:
        """A checkpoint started: a source held up by backpressure sends its barrier now."""

    def accept_barrier(self, checkpoint_id: int) -> None:
        """Take the barrier of ``checkpoint_id`` behind everything still in the input."""
        self.inp.push_barrier(Barrier(checkpoint_id))

    def explain(self, failure: BaseException) -> None:
        """Add what the stage knows (the element's source line) to the job's failure."""
        if isinstance(failure, AsyncFunctionError) and failure.record is not None:
            line = line_of(failure.record)
            if line is not None:
                failure.add_note(f"the element came from {self.pipeline.source.name}:{line}")
            failure.record = plain(failure.record)


@final
class SourceStage(Stage):
    def __init__(self, job: Host, pipeline: Pipeline, index: int, out: Channel) -> None:
        super().__init__(job, pipeline, f"source {pipeline.source.name}", index)
        self.out = out
        self.injected = 0  # the last checkpoint whose barrier this source sent
        self.waiting = False  # waiting for room downstream, after sending its batch

    async def run(self) -> None:
        job, source, out = self.job, self.pipeline.source, self.out
        size = job.buffer_size
        sourced = source.yields_lines
        read = source.read
        coordinator = job.coordinator
        while (batch := await read(size)) is not None:
            if not sourced:
                batch = as_sourced(source, batch)
            records = len(batch) - countOf(map(type, batch), Watermark)
            job.events_in += records
            self.records += records
            if (room := out.push_batch(batch)) is not None:
                self.waiting = True  # the coordinator may send a barrier meanwhile
                await room
                self.waiting = False
            if coordinator is not None and coordinator.requested > self.injected:
                self.inject(coordinator)
        if coordinator is not None and coordinator.requested > self.injected:
            self.inject(coordinator)
        out.push(FINAL)  # the end of event time, as Flink's bounded sources emit
        self.finished = True
        out.close()

    def nudge(self) -> None:
        coordinator = self.job.coordinator
        if coordinator is not None and self.waiting and coordinator.requested > self.injected:
            self.inject(coordinator)

    def inject(self, coordinator: Coordinator) -> None:
        """Save the position after everything sent so far and send the barrier behind it."""
        n = self.injected = coordinator.requested
        self.acknowledge(coordinator, n, self.pipeline.source.position())
        self.out.push_barrier(Barrier(n))

    def final_state(self) -> Any:
        return self.pipeline.source.position()

    def explain(self, failure: BaseException) -> None:
        super().explain(failure)
        if not isinstance(failure, BadInputError | ConfigError):
            source = self.pipeline.source
            failure.add_note(f"while reading {source.name} after line {source.line}")


def as_sourced(source: Source, batch: list[StreamElement]) -> list[StreamElement]:
    """A user source's batch with every record a SourcedRecord (without a line)."""
    out: list[StreamElement] = []
    for element in batch:
        if isinstance(element, SourcedRecord | Watermark):
            out.append(element)
        elif isinstance(element, Record):
            out.append(SourcedRecord(element.value, element.timestamp, None))
        else:
            msg = (
                f"source {source.name}: read() must return Records and Watermarks, got {element!r}"
            )
            raise TypeError(msg)
    return out


@final
class SinkStage(Stage):
    def __init__(
        self,
        job: Host,
        pipeline: Pipeline,
        index: int,
        steps: list[Step],
        sink: Sink,
        inp: Channel,
    ) -> None:
        super().__init__(job, pipeline, sink.name, index)
        self.steps = steps
        self.sink = sink
        self.inp = inp
        self.rejected = 0
        self._reject = job.rejecter(pipeline, sink.name, index)

    def restore(self, state: Any) -> None:
        for step, saved in zip(self.steps, state["steps"], strict=True):
            step.restore(saved)

    async def drained_state(self, checkpoint_id: int) -> Any:
        return await self._state(checkpoint_id)

    def final_state(self) -> Any:  # pragma: no cover - drained_state replaces it
        raise NotImplementedError

    async def _state(self, checkpoint_id: int) -> Any:
        steps = [step.snapshot() for step in self.steps]
        return {"steps": steps, "sink": await self.sink.pre_commit(checkpoint_id)}

    def reject(self, error: BadInputError, record: Record[Any] | None = None, /) -> None:
        self.rejected += 1
        self._reject(error, record)

    async def run(self) -> None:
        job, inp, steps, sink = self.job, self.inp, self.steps, self.sink
        write = sink.write
        coordinator = job.coordinator
        for step in steps:
            step.start(inp.wake)
        try:
            while (batch := await inp.get()) is not None:
                if type(batch) is Barrier:
                    assert coordinator is not None  # only a checkpointing job sends barriers
                    self.acknowledge(coordinator, batch.id, await self._state(batch.id))
                    continue
                for step in steps:
                    batch = step.process(batch)
                if not batch:
                    continue
                records = len(batch) - countOf(map(type, batch), Watermark)
                rejected = self.rejected
                pending = write(batch)
                if pending is not None:
                    await pending
                written = records - (self.rejected - rejected)
                job.events_out += written
                self.records += written
        finally:
            for step in steps:
                step.stop()
        self.finished = True

    def explain(self, failure: BaseException) -> None:
        super().explain(failure)
        if not isinstance(failure, BadInputError | AsyncFunctionError):
            failure.add_note(f"while writing to {self.sink.name}")
