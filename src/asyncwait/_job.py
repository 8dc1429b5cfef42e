"""Running a built job: stages as tasks, channels between them, failure and shutdown.

Stages of one pipeline (``a``: async operator; ``s``: chained stateless steps)::

    SourceStage ─ch0─► OperatorStage(s0, a0) ─ch1─► ... ─chN─► SinkStage(sN, sink)

Opening order (nothing is written before every source opened): the checkpoint to resume
from (if the job checkpoints), sources (at the saved positions), errors file, operators,
sinks (which put their output back to what the checkpoint committed); then one task per
stage, and the checkpoint coordinator (see ``_checkpointing``). The first exception in any
stage (or a ``max_errors`` overflow anywhere) cancels every stage task. Shutdown, always:
wait for the cancelled tasks, close every operator, source and sink, close the errors file;
then raise the first failure, with the element's source line as a note when known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, final

from ._channel import Barrier, Channel, SourcedRecord, plain
from ._checkpointing import Coordinator
from ._checkpoints import Checkpoint, CheckpointConfig, CheckpointStore
from ._rejects import ErrorLog, Reject, describe
from ._steps import FilterStep, FlatMapStep, MapStep, Rejected, Step
from ._stream import AsyncSpec, Pipeline, StepSpec
from .elements import Record, StreamElement, Watermark
from .errors import AsyncFunctionError, BadInputError, ConfigError
from .operator import AsyncWaitOperator
from .runtime import JobProgress, JobResult, OperatorSummary
from .sinks import Sink
from .sources import Source
from .watermarks import MAX_TIMESTAMP, _WatermarkStep

_FINAL = Watermark(MAX_TIMESTAMP)
_NONE: list[StreamElement] = []  # an empty default, never modified

# Where an operator stage's run() waits (see _OperatorStage._barrier_arrived).
_IDLE, _ROOM, _FEEDING, _ENDING = "idle", "room", "feeding", "ending"


def _line(record: Record[Any] | None) -> int | None:
    return record.line if isinstance(record, SourcedRecord) else None


class _Stage:
    """One task of a running pipeline."""

    inp: Channel  # where it takes its elements from (every stage but a source)

    def __init__(self, job: Job, pipeline: Pipeline, name: str) -> None:
        self.job = job
        self.pipeline = pipeline
        self.name = name
        self.index = len(job.stages)  # its place in the job: checkpoints key states by it
        self.finished = False  # ran to its end (set in the same step as closing its output)

    async def run(self) -> None:
        raise NotImplementedError

    def restore(self, state: Any) -> None:
        """Take the state this stage saved in the checkpoint the job resumes from."""

    def final_state(self) -> Any:
        """The state to save for a checkpoint taken after this stage ended."""
        raise NotImplementedError

    async def drained_state(self, checkpoint_id: int) -> Any:
        """Like :meth:`final_state`, for the sink stage (its sink must pre-commit)."""
        return self.final_state()

    def nudge(self, coordinator: Coordinator) -> None:
        """A checkpoint started: a source held up by backpressure sends its barrier now."""

    def accept_barrier(self, barrier: Barrier) -> None:
        """Take ``barrier`` behind everything still in this stage's input."""
        self.inp.push_barrier(barrier)

    def explain(self, failure: BaseException) -> None:
        """Add what the stage knows (the element's source line) to the job's failure."""
        if isinstance(failure, AsyncFunctionError) and failure.record is not None:
            line = _line(failure.record)
            if line is not None:
                failure.add_note(f"the element came from {self.pipeline.source.name}:{line}")
            failure.record = plain(failure.record)


@final
class _SourceStage(_Stage):
    def __init__(self, job: Job, pipeline: Pipeline, out: Channel) -> None:
        super().__init__(job, pipeline, f"source {pipeline.source.name}")
        self.out = out
        self.injected = 0  # the last checkpoint whose barrier this source sent
        self.waiting = False  # waiting for room downstream, after sending its batch

    async def run(self) -> None:
        job, source, out = self.job, self.pipeline.source, self.out
        size = job.buffer_size
        sourced = source._yields_sourced
        read = source.read
        coordinator = job.coordinator
        while (batch := await read(size)) is not None:
            if not sourced:
                batch = _as_sourced(source, batch)
            records = len(batch)
            for element in batch:
                if type(element) is Watermark:
                    records -= 1
            job.events_in += records
            if (room := out.push_batch(batch)) is not None:
                self.waiting = True  # the coordinator may send a barrier meanwhile
                await room
                self.waiting = False
            if coordinator is not None and coordinator.requested > self.injected:
                self.inject(coordinator)
        if coordinator is not None and coordinator.requested > self.injected:
            self.inject(coordinator)
        out.push(_FINAL)  # the end of event time, as Flink's bounded sources emit
        self.finished = True
        out.close()

    def nudge(self, coordinator: Coordinator) -> None:
        if self.waiting and coordinator.requested > self.injected:
            self.inject(coordinator)

    def inject(self, coordinator: Coordinator) -> None:
        """Save the position after everything sent so far and send the barrier behind it."""
        n = self.injected = coordinator.requested
        source = self.pipeline.source
        coordinator.ack(n, self.index, {"offset": source.offset, "line": source.line})
        self.out.push_barrier(Barrier(n))

    def final_state(self) -> Any:
        source = self.pipeline.source
        return {"offset": source.offset, "line": source.line}

    def explain(self, failure: BaseException) -> None:
        super().explain(failure)
        if not isinstance(failure, BadInputError | ConfigError):
            source = self.pipeline.source
            failure.add_note(f"while reading {source.name} after line {source.line}")


def _as_sourced(source: Source, batch: list[StreamElement]) -> list[StreamElement]:
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


def _rejection(element: StreamElement, error: BadInputError) -> tuple[Any, ...]:
    """The outputs of an element whose async function said its input was bad."""
    assert isinstance(element, Record)  # only records are called
    # The errors file needs the message, not the traceback. Kept, the traceback's frames
    # (the operator's, the stage's: the whole input batch) would hold the element's queue
    # entry, which holds this marker: a cycle per bad element, each pinning a batch of
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
    return (Rejected(element.value, error, _line(element)),)


@final
class _OperatorStage(_Stage):
    def __init__(
        self,
        job: Job,
        pipeline: Pipeline,
        steps: list[Step],
        spec: AsyncSpec,
        inp: Channel,
        out: Channel,
        sourced: bool,
    ) -> None:
        super().__init__(job, pipeline, spec.name)
        self.steps = steps
        self.inp = inp
        self.out = out
        self.op: AsyncWaitOperator[Any, Any] = spec.operator(spec.function)
        self.reject = job.rejecter(pipeline, spec.name)
        self.sourced = sourced
        # From the checkpoint resumed: the operator's inputs (after this stage's steps), and
        # what waited in the input channel (before them).
        self.restored: list[StreamElement] = []
        self.restored_input: list[StreamElement] = []
        # Where run() waits, for a barrier that arrives meanwhile (see _barrier_arrived).
        self._phase = _IDLE
        self._batch: list[StreamElement] = []  # the batch of the _ROOM and _FEEDING phases
        if job.checkpoint_config is not None:
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
                self.job.reject_output(self.pipeline, self.name, value)
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
        return [
            e if isinstance(e, Watermark) else SourcedRecord(e.value, e.timestamp, None)
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
            "elements": [e if isinstance(e, Watermark) else plain(e) for e in inputs],
            "input": [
                e if isinstance(e, Watermark) else plain(e)
                for e in (*self.restored_input, *waiting)
            ],
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
        coordinator.ack(barrier.id, self.index, self._snapshot(unfed, waiting))
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
                    coordinator.ack(got.id, self.index, self._snapshot())
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


@final
class _SinkStage(_Stage):
    def __init__(
        self, job: Job, pipeline: Pipeline, steps: list[Step], sink: Sink, inp: Channel
    ) -> None:
        super().__init__(job, pipeline, sink.name)
        self.steps = steps
        self.sink = sink
        self.inp = inp
        self.rejected = 0
        self._reject = job.rejecter(pipeline, sink.name)

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
                    coordinator.ack(batch.id, self.index, await self._state(batch.id))
                    continue
                for step in steps:
                    batch = step.process(batch)
                if not batch:
                    continue
                records = len(batch)
                for element in batch:
                    if type(element) is Watermark:
                        records -= 1
                rejected = self.rejected
                pending = write(batch)
                if pending is not None:
                    await pending
                job.events_out += records - (self.rejected - rejected)
        finally:
            for step in steps:
                step.stop()
        self.finished = True

    def explain(self, failure: BaseException) -> None:
        super().explain(failure)
        if not isinstance(failure, BadInputError | AsyncFunctionError):
            failure.add_note(f"while writing to {self.sink.name}")


_STEPS: dict[str, Callable[..., Step]] = {
    "map": MapStep,
    "filter": FilterStep,
    "flat_map": FlatMapStep,
    "watermarks": _WatermarkStep,
}


@final
class Job:
    """One run of a built job (private; ``StreamEnvironment.execute_async`` makes one)."""

    def __init__(
        self,
        name: str,
        pipelines: list[Pipeline],
        *,
        errors_path: Path | None,
        max_errors: int | None,
        buffer_size: int,
        checkpoint: CheckpointConfig | None = None,
    ) -> None:
        self.name = name
        self.pipelines = pipelines
        self.sinks = [p.sink for p in pipelines if p.sink is not None]
        self.buffer_size = buffer_size
        self.errors = ErrorLog(name, errors_path, max_errors, self.fail)
        self.events_in = 0
        self.events_out = 0
        self.running = False
        self.checkpoint_config = checkpoint
        self.coordinator: Coordinator | None = None
        self.restored_from: int | None = None
        self.stopped = False
        self._stop_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = 0.0
        self._ended: float | None = None
        self.stages: list[_Stage] = []
        self._operators: list[AsyncWaitOperator[Any, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None
        self._failed_stage: _Stage | None = None
        self._opened_sources: list[Source] = []
        self._opened_sinks: list[Sink] = []

    # ------------------------------------------------------------------ bad input

    def rejecter(self, pipeline: Pipeline, operator: str | None) -> Reject:
        """The reject function of one source, step or sink of ``pipeline``."""
        add, source = self.errors.add, pipeline.source.name

        def reject(error: BadInputError, record: Record[Any] | None = None, /) -> None:
            if operator is None:
                # A line the source could not read is still an event in: in = out + errors
                # (+ what filters and inner joins drop).
                self.events_in += 1
            line = _line(record)
            if line is None:
                line = error.line
            raw = error.raw
            if raw is None:
                raw = describe(record.value) if record is not None else ""
            origin = error.source if operator is None and error.source else source
            add(source=origin, line=line, raw=raw, reason=str(error), operator=operator)

        return reject

    def reject_output(self, pipeline: Pipeline, operator: str, rejected: Rejected) -> None:
        """An async function said its input was bad: route the input aside."""
        error = rejected.error
        self.errors.add(
            source=pipeline.source.name,
            line=rejected.line if rejected.line is not None else error.line,
            raw=error.raw if error.raw is not None else describe(rejected.value),
            reason=str(error),
            operator=operator,
        )

    # ------------------------------------------------------------------ failure

    def fail(self, exc: BaseException, stage: _Stage | None = None) -> None:
        """Record the job's first failure and cancel every stage."""
        if self._failure is None:
            self._failure = exc
            self._failed_stage = stage
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current and not task.done():
                task.cancel()

    async def _guard(self, stage: _Stage) -> None:
        try:
            await stage.run()
        except Exception as exc:
            self.fail(exc, stage)

    # ------------------------------------------------------------------ running

    def _build(self, loop: asyncio.AbstractEventLoop) -> None:
        size = self.buffer_size
        for index, pipeline in enumerate(self.pipelines):
            label = f"{index}:{pipeline.source.name}"
            channel = Channel(loop, size, f"{label}/source")
            self.stages.append(_SourceStage(self, pipeline, channel))
            steps: list[Step] = []
            sourced = True  # records are SourcedRecords until the first async operator
            for spec in pipeline.steps:
                if isinstance(spec, StepSpec):
                    reject = self.rejecter(pipeline, spec.name)
                    steps.append(_STEPS[spec.kind](spec.function, spec.name, reject, sourced))
                    continue
                out = Channel(loop, size, f"{label}/{spec.name}")
                stage = _OperatorStage(self, pipeline, steps, spec, channel, out, sourced)
                self.stages.append(stage)
                self._operators.append(stage.op)
                channel, steps, sourced = out, [], False
            assert pipeline.sink is not None  # execute_async checks
            self.stages.append(_SinkStage(self, pipeline, steps, pipeline.sink, channel))

    def pipeline_stages(self, pipeline: int) -> list[_Stage]:
        """The stages of pipeline number ``pipeline``, source first."""
        chosen = self.pipelines[pipeline]
        return [stage for stage in self.stages if stage.pipeline is chosen]

    # ------------------------------------------------------------------ checkpoints

    def topology(self) -> list[dict[str, Any]]:
        """The job's shape, which a checkpoint must match to be restored."""
        shape = []
        for pipeline in self.pipelines:
            steps = [
                [spec.kind, spec.name]
                if isinstance(spec, StepSpec)
                else ["async", spec.name, spec.mode.value]
                for spec in pipeline.steps
            ]
            sink = pipeline.sink
            shape.append(
                {
                    "source": [type(pipeline.source).__name__, pipeline.source.name],
                    "steps": steps,
                    "sink": [type(sink).__name__, sink.name if sink is not None else None],
                }
            )
        return shape

    def _load_checkpoint(self, config: CheckpointConfig) -> Checkpoint | None:
        """The checkpoint to resume from, or None; refuses one of another topology."""
        store = CheckpointStore(config.dir, self.name, config.keep)
        topology = self.topology()
        for pipeline in self.pipelines:
            if not pipeline.source.replayable:
                msg = (
                    f"job {self.name!r}: checkpointing needs sources that can be read again "
                    f"from a saved position; {pipeline.source.name} cannot"
                )
                raise ConfigError(msg)
        if config.fresh:
            store.clear()
            checkpoint = None
        else:
            checkpoint = store.latest()
        if checkpoint is not None and checkpoint.topology != topology:
            msg = (
                f"job {self.name!r}: checkpoint {checkpoint.id} in {str(store.dir)!r} was "
                f"taken by a job of another shape, so it cannot be restored.\n"
                f"  checkpoint: {checkpoint.topology}\n  this job:   {topology}\n"
                "Start over with --fresh (StreamEnvironment(..., fresh=True)), or use "
                "another checkpoint_dir or job name."
            )
            raise ConfigError(msg)
        if checkpoint is not None and checkpoint.finished:
            checkpoint = None  # that run completed: a new run starts from the beginning
        first_id = max([0, *store.ids()]) + 1
        self.coordinator = Coordinator(self, store, config.interval, topology, first_id)
        if checkpoint is not None:
            # The job's counters stay this run's (the checkpoint keeps the earlier totals).
            self.restored_from = checkpoint.id
        return checkpoint

    def request_stop(self) -> None:
        """Stop the job: with checkpoints, after taking one (then resumable); else at once."""
        if self.stopped or not self.running:
            return
        self.stopped = True
        if not self._tasks:
            return  # still opening: run() stops as soon as everything is open
        if self.coordinator is None:
            self._cancel_stages()
            return
        coordinator = self.coordinator

        async def stop() -> None:
            try:
                await coordinator.checkpoint()
                await coordinator.finish()
            except Exception as exc:
                self.fail(exc)
                return
            self._cancel_stages()

        assert self._loop is not None  # running
        self._stop_task = self._loop.create_task(stop(), name=f"asyncwait {self.name}: stop")

    def _cancel_stages(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current and not task.done():
                task.cancel()

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        config = self.checkpoint_config
        checkpoint = None if config is None else self._load_checkpoint(config)
        for index, pipeline in enumerate(self.pipelines):
            # First, so that a missing input fails the job before any output is touched.
            reject = self.rejecter(pipeline, None)
            if checkpoint is None:
                await pipeline.source.open(reject)
            else:
                position = checkpoint.stages[self._source_stage_index(index)]
                await pipeline.source.open(
                    reject, start_offset=position["offset"], start_line=position["line"] + 1
                )
            self._opened_sources.append(pipeline.source)
        self.errors.open(append=checkpoint is not None)
        self._build(loop)
        if checkpoint is not None:
            for stage, state in zip(self.stages, checkpoint.stages, strict=True):
                stage.restore(state)
        for stage in self.stages:
            if isinstance(stage, _OperatorStage):
                # emit() never returns an awaitable (see there); bad input is routed aside.
                await stage.op.open(stage.emit, sync_emit=True, on_bad_input=_rejection)
        for stage in self.stages:
            if isinstance(stage, _SinkStage):
                if config is not None:
                    saved = None if checkpoint is None else checkpoint.stages[stage.index]
                    stage.sink.initialize_state(None if saved is None else saved["sink"])
                await stage.sink.open(stage.reject)
                self._opened_sinks.append(stage.sink)
        self._tasks = [
            loop.create_task(self._guard(stage), name=f"asyncwait {self.name}: {stage.name}")
            for stage in self.stages
        ]
        if self._failure is not None:
            self.fail(self._failure)  # a stage failed while tasks were still being created
        if self.coordinator is not None:
            self.coordinator.start(loop)

    def _source_stage_index(self, pipeline: int) -> int:
        """The stage index of pipeline ``pipeline``'s source (as ``_build`` will number it)."""
        index = 0
        for earlier in self.pipelines[:pipeline]:
            index += 2 + sum(1 for spec in earlier.steps if isinstance(spec, AsyncSpec))
        return index

    async def run(self) -> JobResult:
        """Run every stage to the end; shut down; return the result or raise the failure."""
        self._loop = loop = asyncio.get_running_loop()
        self._started = loop.time()
        self.running = True
        outer: BaseException | None = None
        try:
            await self._start(loop)
            if self.stopped and self._stop_task is None:
                # Stopped while opening: nothing has been processed, nothing to save (a
                # checkpoint restored from stays the latest).
                self._cancel_stages()
            if self._tasks:
                await asyncio.wait(self._tasks)
            stop_task = self._stop_task
            if stop_task is not None:
                await stop_task  # its checkpoint must land before anything closes
            coordinator = self.coordinator
            if coordinator is not None and self._failure is None and not self.stopped:
                # Everything drained: the last checkpoint commits the rest, marked finished.
                await coordinator.finish()
                await coordinator.checkpoint(final=True)
        except BaseException as exc:  # re-raised after the shutdown below
            outer = exc
        problems = await self._shutdown()
        self._ended = loop.time()
        self.running = False
        failure = outer if isinstance(outer, asyncio.CancelledError) else self._failure or outer
        if failure is not None:
            if failure is self._failure and self._failed_stage is not None:
                self._failed_stage.explain(failure)
            for problem in problems:
                failure.add_note(f"also, while shutting down: {type(problem).__name__}: {problem}")
            raise failure
        if len(problems) == 1:
            raise problems[0]
        if problems:
            msg = f"job {self.name!r}: errors while closing"
            raise ExceptionGroup(msg, problems)
        return self._result()

    async def _shutdown(self) -> list[Exception]:
        """Cancel the stages, then close operators, sources, sinks and the errors file."""
        tasks = [task for task in self._tasks if not task.done()]
        if self._stop_task is not None and not self._stop_task.done():
            tasks.append(self._stop_task)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self.coordinator is not None:
            await self.coordinator.stop()
        problems: list[Exception] = []
        closers = [op.close for op in self._operators]
        closers += [source.close for source in self._opened_sources]
        closers += [sink.close for sink in self._opened_sinks]
        for close in closers:
            try:
                await close()
            except Exception as exc:
                problems.append(exc)
        try:
            self.errors.close()
        except Exception as exc:
            problems.append(exc)
        return problems

    # ------------------------------------------------------------------ numbers

    def _summaries(self) -> tuple[OperatorSummary, ...]:
        summaries = []
        for op in self._operators:
            stats = op.statistics()
            metrics = op.metrics.snapshot()
            summaries.append(
                OperatorSummary(
                    name=op.name,
                    in_flight=stats.in_flight,
                    queued=stats.queued,
                    capacity=stats.capacity,
                    emitted=stats.emitted,
                    retries=stats.retries,
                    timeouts=stats.timeouts,
                    failures=stats.failures,
                    latency_p50=metrics.latency_p50,
                    latency_p99=metrics.latency_p99,
                    counters=metrics.counters,
                )
            )
        return tuple(summaries)

    def _elapsed(self) -> float:
        if self._loop is None:
            return 0.0
        end = self._ended if self._ended is not None else self._loop.time()
        return end - self._started

    def progress(self) -> JobProgress:
        """A snapshot of the numbers now."""
        return JobProgress(
            name=self.name,
            running=self.running,
            elapsed=self._elapsed(),
            events_in=self.events_in,
            events_out=self.events_out,
            errors=self.errors.count,
            operators=self._summaries(),
            checkpoints=0 if self.coordinator is None else self.coordinator.completed,
            last_checkpoint=None if self.coordinator is None else self.coordinator.last_id,
        )

    def _result(self) -> JobResult:
        return JobResult(
            name=self.name,
            events_in=self.events_in,
            events_out=self.events_out,
            errors=self.errors.count,
            duration=self._elapsed(),
            operators=self._summaries(),
            error_samples=tuple(self.errors.samples),
            sink_results=tuple(p.sink.result() for p in self.pipelines if p.sink is not None),
            stopped=self.stopped,
            restored_from=self.restored_from,
            checkpoints=0 if self.coordinator is None else self.coordinator.completed,
            last_checkpoint=None if self.coordinator is None else self.coordinator.last_id,
        )
