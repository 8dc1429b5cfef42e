"""The checkpoint coordinator of a running job: barriers, acknowledgements, commit (private).

Aligned checkpoints, as Flink's for a chain of tasks::

    trigger n ─► each source, between two batches: saves its position, sends barrier n
              ─► each operator stage, when barrier n arrives: saves its steps' state and
                 its operator's snapshot_state() (the inputs still in flight), passes it on
              ─► each sink stage: saves its steps' state, sink.pre_commit(n)
    every stage acknowledged ─► the job prepares its own outputs (the errors file's part)
              ─► checkpoint file written (atomic, fsync) ─► sink.commit(n), errors commit

Everything before barrier n in a channel is reflected in the states the stages downstream
save for n, and nothing after it, so the saved states fit together. Once a source has
ended, the coordinator acknowledges it (and any stage after it that has ended too) with
its final state and hands the barrier to the first stage still running, behind the rest
of its input; the job's last checkpoint, taken after every stage ended, is marked
*finished*. One checkpoint runs at a time.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, final

from .._faults import crash_point
from .._tasks import TaskOwner
from ..errors import AsyncWaitError
from ..metrics import Histogram
from .store import Checkpoint, CheckpointStore, now

__all__ = ("Coordinator", "JobView", "StageView")

_log = logging.getLogger("asyncwait.checkpoint")


class StageView(Protocol):
    """What the coordinator needs from one stage of a running job."""

    @property
    def index(self) -> int:
        """The stage's place in the job: checkpoints key its state by it."""
        ...

    @property
    def finished(self) -> bool:
        """Whether the stage ran to its end."""
        ...

    def accept_barrier(self, checkpoint_id: int) -> None:
        """Take the barrier of ``checkpoint_id`` behind everything still in its input."""
        ...

    def nudge(self) -> None:
        """A checkpoint started: a source held up by backpressure sends its barrier now."""
        ...

    def final_state(self) -> Any:
        """The state to save for a checkpoint taken after the stage ended."""
        ...

    async def drained_state(self, checkpoint_id: int) -> Any:
        """Like :meth:`final_state`, for a sink stage (its sink must pre-commit)."""
        ...


class JobView(Protocol):
    """What the coordinator needs from the job whose checkpoints it takes."""

    @property
    def name(self) -> str:
        """The job's name."""
        ...

    def stage_count(self) -> int:
        """How many stages the job has (each acknowledges every checkpoint)."""
        ...

    def pipeline_count(self) -> int:
        """How many pipelines (source to sink) the job has."""
        ...

    def pipeline_stages(self, pipeline: int) -> Sequence[StageView]:
        """The stages of pipeline number ``pipeline``, source first."""
        ...

    def counters(self, checkpoint_id: int) -> dict[str, int]:
        """The job's totals up to the barrier of ``checkpoint_id``, saved with it."""
        ...

    async def prepare(self, checkpoint_id: int) -> Any:
        """Every stage acknowledged ``checkpoint_id``: prepare the job's own outputs.

        Returns their state (picklable), saved with the checkpoint.
        """
        ...

    async def commit(self, checkpoint_id: int) -> None:
        """Make what the stages prepared for ``checkpoint_id`` visible (sinks' commits)."""
        ...

    def fail(self, exc: BaseException) -> None:
        """Fail the job with ``exc``."""
        ...


@final
class Coordinator:
    """Takes a job's checkpoints: periodically, on request (stop), and at the end."""

    def __init__(
        self,
        job: JobView,
        store: CheckpointStore,
        interval: float | None,
        topology: Any,
        first_id: int,
    ) -> None:
        self.job = job
        self.store = store
        self.interval = interval
        self.topology = topology
        self.requested = 0  # the newest checkpoint whose barriers the sources must send
        self.next_id = first_id
        self.completed = 0  # checkpoints completed by this run
        self.last_id: int | None = None
        self.durations = Histogram()  # loop seconds from trigger to commit, per checkpoint
        self._acks: dict[int, Any] = {}
        self._complete: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._periodic: asyncio.Task[None] | None = None
        # Owns the periodic task and the acknowledgements of ended sink stages.
        self._tasks = TaskOwner(f"{job.name} checkpoints")

    def __repr__(self) -> str:
        return (
            f"<Coordinator {str(self.store.dir)!r} next {self.next_id} completed {self.completed}>"
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the periodic checkpoints (with an interval)."""
        if self.interval is not None:
            self._periodic = self._tasks.spawn(self._every(self.interval), "periodic")

    async def _every(self, interval: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                await self.checkpoint()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.job.fail(exc)

    async def finish(self) -> None:
        """End the periodic checkpoints, letting one under way complete first."""
        async with self._lock:
            periodic, self._periodic = self._periodic, None
            if periodic is not None and not periodic.done():
                periodic.cancel()
                await asyncio.wait([periodic])

    async def stop(self) -> None:
        """Cancel the periodic checkpoints and any acknowledgement still running."""
        await self._tasks.aclose()
        self._periodic = None

    # ------------------------------------------------------------------ one checkpoint

    async def checkpoint(self, *, final: bool = False) -> int:
        """Take a checkpoint and commit it; return its id.

        Raises:
            AsyncWaitError: the state cannot be saved (e.g. a value that cannot be pickled).
            OSError: the checkpoint cannot be written.
        """
        async with self._lock:
            started = asyncio.get_running_loop().time()
            n = self.next_id
            self.next_id += 1
            self._acks = {}
            complete = self._complete = asyncio.get_running_loop().create_future()
            self.requested = n
            for pipeline in range(self.job.pipeline_count()):
                self._reach(pipeline, n)
            await complete
            job = self.job
            stages = [self._acks[i] for i in range(job.stage_count())]
            self._acks = {}
            errors = await job.prepare(n)
            checkpoint = Checkpoint(
                id=n,
                job=job.name,
                topology=self.topology,
                finished=final,
                created=now(),
                stages=stages,
                counters=job.counters(n),
                errors=errors,
            )
            try:
                data = CheckpointStore.encode(checkpoint)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                msg = (
                    f"job {job.name!r}: checkpoint {n} cannot be saved: a value in flight "
                    f"cannot be pickled: {exc}"
                )
                raise AsyncWaitError(msg) from exc
            await asyncio.to_thread(self.store.write, n, data)
            crash_point("checkpoint-written")
            await job.commit(n)
            await asyncio.to_thread(self.store.retain)
            self.completed += 1
            self.last_id = n
            seconds = asyncio.get_running_loop().time() - started
            self.durations.observe(seconds)
            _log.info(
                "job %r: checkpoint %d completed in %.3f s",
                job.name,
                n,
                seconds,
                extra={
                    "event": "checkpoint_completed",
                    "job": job.name,
                    "fields": {"id": n, "seconds": round(seconds, 6), "final": final},
                },
            )
            return n

    def ack(self, n: int, stage: int, state: Any) -> None:
        """Stage ``stage`` saved ``state`` for checkpoint ``n``."""
        if n != self.requested:
            return  # a barrier of a checkpoint abandoned when the job stopped
        acks = self._acks
        acks[stage] = state
        complete = self._complete
        if len(acks) == self.job.stage_count() and complete is not None and not complete.done():
            complete.set_result(None)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                self.job.fail(exc)

        self._tasks.spawn(guarded(), "acknowledge")

    def _reach(self, pipeline: int, n: int) -> None:
        """Get barrier ``n`` past the stages of ``pipeline`` that have ended.

        A running source sends the barrier itself, between two batches (at once when it
        waits for room). Stages that have
        ended are acknowledged here with their final state, and the barrier goes into the
        input of the first stage still running, behind everything it has still to take.
        """
        stages = self.job.pipeline_stages(pipeline)
        for stage in stages:
            if not stage.finished:
                if stage is not stages[0]:
                    stage.accept_barrier(n)
                else:
                    stage.nudge()
                return
            if stage is stages[-1]:
                self._spawn(self._ack_later(stage, n))
            else:
                self.ack(n, stage.index, stage.final_state())

    async def _ack_later(self, stage: StageView, n: int) -> None:
        self.ack(n, stage.index, await stage.drained_state(n))
