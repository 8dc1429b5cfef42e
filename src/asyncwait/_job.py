"""Running a built job: stages as tasks, channels between them, failure and shutdown.

Stages of one pipeline (``a``: async operator; ``s``: chained stateless steps)::

    SourceStage ─ch0─► OperatorStage(s0, a0) ─ch1─► ... ─chN─► SinkStage(sN, sink)

Opening order (nothing is written before every source opened): sources, errors file,
operators, sinks; then one task per stage. The first exception in any stage (or a
``max_errors`` overflow anywhere) cancels every stage task. Shutdown, always: wait for the
cancelled tasks, close every operator, source and sink, close the errors file; then raise
the first failure, with the element's source line as a note when known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, final

from ._channel import Channel, SourcedRecord, plain
from ._rejects import ErrorLog, Reject, describe
from ._steps import FilterStep, FlatMapStep, Guarded, MapStep, Rejected, Step, guard_retry
from ._stream import AsyncSpec, Pipeline, StepSpec
from .elements import Record, StreamElement, Watermark
from .errors import AsyncFunctionError, BadInputError, ConfigError
from .operator import AsyncWaitOperator, OutputMode
from .runtime import JobProgress, JobResult, OperatorSummary
from .sinks import Sink
from .sources import Source
from .watermarks import MAX_TIMESTAMP, _WatermarkStep

_FINAL = Watermark(MAX_TIMESTAMP)


def _line(record: Record[Any] | None) -> int | None:
    return record.line if isinstance(record, SourcedRecord) else None


class _Stage:
    """One task of a running pipeline."""

    def __init__(self, job: Job, pipeline: Pipeline, name: str) -> None:
        self.job = job
        self.pipeline = pipeline
        self.name = name

    async def run(self) -> None:
        raise NotImplementedError

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

    async def run(self) -> None:
        job, source, out = self.job, self.pipeline.source, self.out
        size = job.buffer_size
        sourced = source._yields_sourced
        read = source.read
        while (batch := await read(size)) is not None:
            if not sourced:
                batch = _as_sourced(source, batch)
            records = len(batch)
            for element in batch:
                if type(element) is Watermark:
                    records -= 1
            job.events_in += records
            if (room := out.push_batch(batch)) is not None:
                await room
        out.push(_FINAL)  # the end of event time, as Flink's bounded sources emit
        out.close()

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
        self.guard = Guarded(spec.function, track_lines=sourced)
        self.op: AsyncWaitOperator[Any, Any] = spec.operator(self.guard, guard_retry(spec.retry))
        # KEY_ORDERED: a key that is bad input must not reach the operator (it would fail).
        self.precheck = spec.key if spec.mode is OutputMode.KEY_ORDERED else None
        self.reject = job.rejecter(pipeline, spec.name)

    def emit(self, element: StreamElement) -> asyncio.Future[None] | None:
        if type(element) is not Watermark:
            value = element.value  # type: ignore[union-attr]
            if type(value) is Rejected:
                self.job.reject_output(self.pipeline, self.name, value)
                return None
        return self.out.push(element)

    async def run(self) -> None:
        inp, steps, op = self.inp, self.steps, self.op
        for step in steps:
            step.start(inp.wake)
        try:
            while (batch := await inp.get()) is not None:
                for step in steps:
                    batch = step.process(batch)
                await self._feed(batch)
            await op.end_input()
        finally:
            for step in steps:
                step.stop()
        self.out.close()

    async def _feed(self, batch: list[StreamElement]) -> None:
        op = self.op
        process_element, process_watermark = op.process_element, op.process_watermark
        lines = self.guard.lines if self.guard.track_lines else None
        precheck = self.precheck
        elements: list[Any] = batch
        for element in elements:
            if type(element) is Watermark:
                await process_watermark(element)
                continue
            if precheck is not None:
                try:
                    precheck(element.value)
                except BadInputError as exc:
                    self.reject(exc, element)
                    continue
            if lines is not None:
                lines[id(element.value)] = element.line
            await process_element(element)


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

    def reject(self, error: BadInputError, record: Record[Any] | None = None, /) -> None:
        self.rejected += 1
        self._reject(error, record)

    async def run(self) -> None:
        job, inp, steps, sink = self.job, self.inp, self.steps, self.sink
        write = sink.write
        for step in steps:
            step.start(inp.wake)
        try:
            while (batch := await inp.get()) is not None:
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
    ) -> None:
        self.name = name
        self.pipelines = pipelines
        self.buffer_size = buffer_size
        self.errors = ErrorLog(name, errors_path, max_errors, self.fail)
        self.events_in = 0
        self.events_out = 0
        self.running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = 0.0
        self._ended: float | None = None
        self._stages: list[_Stage] = []
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
            self._stages.append(_SourceStage(self, pipeline, channel))
            steps: list[Step] = []
            sourced = True  # records are SourcedRecords until the first async operator
            for spec in pipeline.steps:
                if isinstance(spec, StepSpec):
                    reject = self.rejecter(pipeline, spec.name)
                    steps.append(_STEPS[spec.kind](spec.function, spec.name, reject, sourced))
                    continue
                out = Channel(loop, size, f"{label}/{spec.name}")
                stage = _OperatorStage(self, pipeline, steps, spec, channel, out, sourced)
                self._stages.append(stage)
                self._operators.append(stage.op)
                channel, steps, sourced = out, [], False
            assert pipeline.sink is not None  # execute_async checks
            self._stages.append(_SinkStage(self, pipeline, steps, pipeline.sink, channel))

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        for pipeline in self.pipelines:
            # First, so that a missing input fails the job before any output is touched.
            await pipeline.source.open(self.rejecter(pipeline, None))
            self._opened_sources.append(pipeline.source)
        self.errors.open()
        self._build(loop)
        for stage in self._stages:
            if isinstance(stage, _OperatorStage):
                await stage.op.open(stage.emit)
        for stage in self._stages:
            if isinstance(stage, _SinkStage):
                await stage.sink.open(stage.reject)
                self._opened_sinks.append(stage.sink)
        self._tasks = [
            loop.create_task(self._guard(stage), name=f"asyncwait {self.name}: {stage.name}")
            for stage in self._stages
        ]
        if self._failure is not None:
            self.fail(self._failure)  # a stage failed while tasks were still being created

    async def run(self) -> JobResult:
        """Run every stage to the end; shut down; return the result or raise the failure."""
        self._loop = loop = asyncio.get_running_loop()
        self._started = loop.time()
        self.running = True
        outer: BaseException | None = None
        try:
            await self._start(loop)
            if self._tasks:
                await asyncio.wait(self._tasks)
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
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
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
        )
