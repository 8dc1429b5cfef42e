"""One run of a built job: stages as tasks, checkpoints, failure and shutdown (private).

Opening order (nothing is written before every source opened): the checkpoint to resume
from (if the job checkpoints; its folder, key and errors file checked), sources (each
checks first that its input is the one the checkpoint read, then opens at the saved
position), errors file, operators, sinks (which put their output back to what the
checkpoint committed); then one task per stage, and the checkpoint coordinator. The first
exception in any stage (or a ``max_errors`` overflow anywhere) cancels every stage task.
Shutdown, always: wait for the cancelled tasks, close every operator, source and sink,
close the errors file; then raise the first failure, with the element's source line as a
note when known.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, final

from .._checkpoint.coordinator import Coordinator
from .._checkpoint.store import Checkpoint, CheckpointConfig, CheckpointStore
from .._rejects import Reject, describe
from .._tasks import TaskOwner
from ..elements import Record
from ..errors import BadInputError, ConfigError
from ..metrics import HistogramSnapshot
from ..operator import AsyncWaitOperator
from ..sinks import Sink
from ..sources import Source
from .channel import Channel
from .errorlog import ErrorLog
from .operator_stage import OperatorStage, dead_lettered, rejection, skipped
from .plan import AsyncSpec, Pipeline, StepSpec, topology
from .results import JobProgress, JobResult, JobTotals, OperatorSummary
from .stages import SinkStage, SourceStage, Stage, line_of
from .steps import FilterStep, FlatMapStep, MapStep, Rejected, Step
from .watermark_step import WatermarkStep

__all__ = ("Job",)

_log = logging.getLogger("asyncwait.job")


_STEPS: dict[str, Callable[..., Step]] = {
    "map": MapStep,
    "filter": FilterStep,
    "flat_map": FlatMapStep,
    "watermarks": WatermarkStep,
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
        self.skipped = 0  # events an operator's on_error = "skip" dropped (counted, no entry)
        self.running = False
        self.checkpoint_config = checkpoint
        self.coordinator: Coordinator | None = None
        self.restored_from: int | None = None
        self._before = JobTotals()  # the restored checkpoint's totals: earlier runs'
        self.stopped = False
        self._stop_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = 0.0
        self._ended: float | None = None
        self.stages: list[Stage] = []
        self._operators: list[AsyncWaitOperator[Any, Any]] = []
        # Owns every task of the run (the stages, a stop under way): _shutdown cancels and
        # awaits them all, so none outlives the run.
        self._owner = TaskOwner(f"job {name}")
        self._tasks: list[asyncio.Task[None]] = []  # the stages
        self._failure: BaseException | None = None
        self._failed_stage: Stage | None = None
        self._opened_sources: list[Source] = []
        self._opened_sinks: list[Sink] = []

    # ------------------------------------------------------------------ bad input

    def _epoch(self, stage: int) -> int:
        """The last checkpoint whose barrier stage number ``stage`` passed (0: none)."""
        stages = self.stages
        return stages[stage].passed if stage < len(stages) else 0

    def rejecter(self, pipeline: Pipeline, operator: str | None, stage: int) -> Reject:
        """The reject function of one source, step or sink of ``pipeline``, in ``stage``."""
        add, source, epoch = self.errors.add, pipeline.source.name, self._epoch

        def reject(error: BadInputError, record: Record[Any] | None = None, /) -> None:
            if operator is None:
                # A line the source could not read is still an event in: in = out + errors
                # (+ what filters and inner joins drop).
                self.events_in += 1
                self.stages[stage].records += 1
            line = line_of(record)
            if line is None:
                line = error.line
            raw = error.raw
            if raw is None:
                raw = describe(record.value) if record is not None else ""
            origin = error.source if operator is None and error.source else source
            add(
                source=origin,
                line=line,
                raw=raw,
                reason=str(error),
                operator=operator,
                epoch=epoch(stage),
            )

        return reject

    def reject_output(
        self, pipeline: Pipeline, operator: str, rejected: Rejected, stage: int
    ) -> None:
        """An async function's input was set aside (see :class:`Rejected`): route it."""
        if rejected.kind == "skipped":
            self.skipped += 1
            self.stages[stage].records += 1
            return
        self.errors.route(rejected, pipeline.source.name, operator, self._epoch(stage))

    # ------------------------------------------------------------------ failure

    def fail(self, exc: BaseException, stage: Stage | None = None) -> None:
        """Record the job's first failure and cancel every stage."""
        if self._failure is None:
            self._failure = exc
            self._failed_stage = stage
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current and not task.done():
                task.cancel()

    async def _guard(self, stage: Stage) -> None:
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
            self.stages.append(SourceStage(self, pipeline, len(self.stages), channel))
            steps: list[Step] = []
            sourced = True  # records are SourcedRecords until the first async operator
            for spec in pipeline.steps:
                if isinstance(spec, StepSpec):
                    # The step is chained into the next stage, whose index this will be.
                    reject = self.rejecter(pipeline, spec.name, len(self.stages))
                    steps.append(_STEPS[spec.kind](spec.function, spec.name, reject, sourced))
                    continue
                out = Channel(loop, size, f"{label}/{spec.name}")
                stage = OperatorStage(
                    self, pipeline, len(self.stages), steps, spec, channel, out, sourced
                )
                self.stages.append(stage)
                self._operators.append(stage.op)
                channel, steps, sourced = out, [], False
            assert pipeline.sink is not None  # execute_async checks
            self.stages.append(
                SinkStage(self, pipeline, len(self.stages), steps, pipeline.sink, channel)
            )

    def pipeline_stages(self, pipeline: int) -> list[Stage]:
        """The stages of pipeline number ``pipeline``, source first."""
        chosen = self.pipelines[pipeline]
        return [stage for stage in self.stages if stage.pipeline is chosen]

    # ------------------------------------------------------------------ checkpoints
    # What the coordinator needs (its JobView protocol).

    def stage_count(self) -> int:
        """How many stages the job has."""
        return len(self.stages)

    def pipeline_count(self) -> int:
        """How many pipelines the job has."""
        return len(self.pipelines)

    def counters(self, checkpoint_id: int) -> dict[str, int]:
        """The job's totals over all its runs up to barrier ``checkpoint_id``, saved with it.

        A resumed run starts from them, so events before a checkpoint are counted once
        however often the job is resumed. ``errors`` is the errors file's entries once the
        checkpoint commits (what :meth:`prepare` sealed).
        """
        before = self._before
        stages = self.stages
        sources = sum(s.records_at(checkpoint_id) for s in stages if type(s) is SourceStage)
        sinks = sum(s.records_at(checkpoint_id) for s in stages if type(s) is SinkStage)
        skipped = sum(s.records_at(checkpoint_id) for s in stages if type(s) is OperatorStage)
        errors = self.errors
        return {
            "events_in": before.events_in + sources,
            "events_out": before.events_out + sinks,
            "errors": errors.total - errors.total_dead,
            "skipped": before.skipped + skipped,
            "dead_letters": errors.total_dead,
            "runs": before.runs + 1,
        }

    async def prepare(self, checkpoint_id: int) -> Any:
        """Every stage passed barrier ``checkpoint_id``: seal the errors file's part of it."""
        return await self.errors.seal(checkpoint_id)

    async def commit(self, checkpoint_id: int) -> None:
        """Commit what every sink and the errors file prepared for ``checkpoint_id``."""
        for sink in self.sinks:
            await sink.commit(checkpoint_id)
        await self.errors.commit(checkpoint_id)

    def topology(self) -> list[dict[str, Any]]:
        """The job's shape, which a checkpoint must match to be restored."""
        return topology(self.pipelines)

    def _load_checkpoint(self, config: CheckpointConfig) -> Checkpoint | None:
        """The checkpoint to resume from, or None; refuses one of another topology."""
        # clear() and latest() first refuse folders another user could write.
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
        if checkpoint is not None:
            self.errors.check_restore(
                checkpoint.errors, f"checkpoint {checkpoint.id} in {str(store.dir)!r}"
            )
        first_id = max([0, *store.ids()]) + 1
        self.coordinator = Coordinator(self, store, config.interval, topology, first_id)
        if checkpoint is not None:
            # The job's counters stay this run's; the checkpoint holds the earlier runs'.
            self.restored_from = checkpoint.id
            self._before = JobTotals.restored(checkpoint.counters)
            _log.info(
                "job %r: resuming from checkpoint %d",
                self.name,
                checkpoint.id,
                extra={
                    "event": "checkpoint_restored",
                    "job": self.name,
                    "fields": {"id": checkpoint.id, "dir": str(store.dir)},
                },
            )
        return checkpoint

    def request_stop(self) -> None:
        """Stop the job: with checkpoints, after taking one (then resumable); else at once."""
        if self.stopped or not self.running:
            return
        self.stopped = True
        _log.info("job %r: stop requested", self.name, extra={"event": "stop", "job": self.name})
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

        self._stop_task = self._owner.spawn(stop(), "stop")

    def _cancel_stages(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current and not task.done():
                task.cancel()

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        config = self.checkpoint_config
        checkpoint = None if config is None else self._load_checkpoint(config)
        for index, pipeline in enumerate(self.pipelines):
            # First, so that a missing (or replaced) input fails the job before any output
            # is touched.
            at = self._source_stage_index(index)
            reject = self.rejecter(pipeline, None, at)
            source = pipeline.source
            if checkpoint is None:
                await source.open(reject)
            else:
                position = checkpoint.stages[at]
                source.check_position(position)
                await source.open(
                    reject, start_offset=position["offset"], start_line=position["line"] + 1
                )
            self._opened_sources.append(source)
        await self.errors.open(
            transactional=config is not None,
            restored=None if checkpoint is None else checkpoint.errors,
        )
        self._build(loop)
        if checkpoint is not None:
            for stage, state in zip(self.stages, checkpoint.stages, strict=True):
                stage.restore(state)
        for stage in self.stages:
            if isinstance(stage, OperatorStage):
                # emit() never returns an awaitable (see there); bad input is routed aside.
                await stage.op.open(
                    stage.emit,
                    sync_emit=True,
                    on_bad_input=rejection,
                    dead_letter=dead_lettered,
                    skipped=skipped,
                )
        for stage in self.stages:
            if isinstance(stage, SinkStage):
                if config is not None:
                    saved = None if checkpoint is None else checkpoint.stages[stage.index]
                    stage.sink.initialize_state(None if saved is None else saved["sink"])
                await stage.sink.open(stage.reject)
                self._opened_sinks.append(stage.sink)
        self._tasks = [self._owner.spawn(self._guard(stage), stage.name) for stage in self.stages]
        if self._failure is not None:
            self.fail(self._failure)  # a stage failed while tasks were still being created
        if self.coordinator is not None:
            self.coordinator.start()

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
        await self._owner.aclose()
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
            await self.errors.close()
        except Exception as exc:
            problems.append(exc)
        return problems

    # ------------------------------------------------------------------ numbers

    def _summaries(self) -> tuple[OperatorSummary, ...]:
        return tuple(OperatorSummary.of(op) for op in self._operators)

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
            skipped=self.skipped,
            dead_letters=self.errors.dead_letters,
            operators=self._summaries(),
            checkpoints=0 if self.coordinator is None else self.coordinator.completed,
            last_checkpoint=None if self.coordinator is None else self.coordinator.last_id,
            totals=self._totals(),
            checkpoint_durations=(
                HistogramSnapshot()
                if self.coordinator is None
                else self.coordinator.durations.snapshot()
            ),
        )

    def _result(self) -> JobResult:
        return JobResult(
            name=self.name,
            events_in=self.events_in,
            events_out=self.events_out,
            errors=self.errors.count,
            skipped=self.skipped,
            dead_letters=self.errors.dead_letters,
            duration=self._elapsed(),
            operators=self._summaries(),
            error_samples=tuple(self.errors.samples),
            sink_results=tuple(p.sink.result() for p in self.pipelines if p.sink is not None),
            stopped=self.stopped,
            restored_from=self.restored_from,
            checkpoints=0 if self.coordinator is None else self.coordinator.completed,
            last_checkpoint=None if self.coordinator is None else self.coordinator.last_id,
            totals=self._totals(),
        )

    def _totals(self) -> JobTotals:
        before = self._before
        return JobTotals(
            events_in=before.events_in + self.events_in,
            events_out=before.events_out + self.events_out,
            errors=before.errors + self.errors.count,
            skipped=before.skipped + self.skipped,
            dead_letters=before.dead_letters + self.errors.dead_letters,
            runs=before.runs + 1,
        )
