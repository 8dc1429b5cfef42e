"""The plan of a job being built: its pipelines, their steps, and the names of the steps.

``DataStream`` methods append specs to a pipeline; the job (``job.py``) runs the plan. Specs
are frozen values: the same plan can be run again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, final

from ..errors import ConfigError
from ..operator import AsyncWaitOperator, OnError, OutputMode
from ..retry import RetryStrategy
from ..sinks import Sink
from ..sources import Source

__all__ = ("AsyncSpec", "JobPlan", "Pipeline", "StepSpec", "output_mode", "topology")


@final
@dataclass(frozen=True, slots=True)
class StepSpec:
    kind: str  # "map" | "filter" | "flat_map" | "watermarks"
    function: Any  # the user function, or the WatermarkStrategy
    name: str


@final
@dataclass(frozen=True, slots=True)
class AsyncSpec:
    function: Any
    mode: OutputMode
    capacity: int
    timeout: float | None
    retry: RetryStrategy
    key: Callable[[Any], Hashable] | None
    name: str
    # What happens to an element whose call finally failed (see AsyncWaitOperator).
    attempt_timeout: float | None = None
    on_error: OnError | str = OnError.FAIL
    default: Callable[[Any, BaseException], Iterable[Any]] | None = None

    def operator(
        self, function: Any, retry: RetryStrategy | None = None
    ) -> AsyncWaitOperator[Any, Any]:
        return AsyncWaitOperator(
            function,
            mode=self.mode,
            capacity=self.capacity,
            timeout=self.timeout,
            retry=self.retry if retry is None else retry,
            key=self.key,
            name=self.name,
            attempt_timeout=self.attempt_timeout,
            on_error=self.on_error,
            default=self.default,
        )


@dataclass(slots=True)
class Pipeline:
    source: Source
    steps: list[StepSpec | AsyncSpec] = field(default_factory=list)
    sink: Sink | None = None


MODES = {mode.value: mode for mode in OutputMode}


def output_mode(mode: OutputMode | str) -> OutputMode:
    if isinstance(mode, OutputMode):
        return mode
    found = MODES.get(mode.lower()) if isinstance(mode, str) else None
    if found is None:
        msg = f"mode must be an OutputMode or one of {sorted(MODES)}, got {mode!r}"
        raise ConfigError(msg)
    return found


@final
class JobPlan:
    """The streams of a job being built, and the names given to their steps.

    Every step gets a name unique in the job: the one given, or the step's kind numbered
    (``map``, ``map-2``, ...). Checkpoints key the state of each step by its place, and
    messages name it.
    """

    __slots__ = ("_names", "pipelines")

    def __init__(self) -> None:
        self.pipelines: list[Pipeline] = []
        self._names: set[str] = set()

    def add(self, source: Source) -> Pipeline:
        """Start a new pipeline reading ``source``."""
        pipeline = Pipeline(source)
        self.pipelines.append(pipeline)
        return pipeline

    def step_name(self, kind: str, name: str | None) -> str:
        """The name of a new step of ``kind``: ``name`` if given, else a fresh one.

        Raises:
            ConfigError: ``name`` is not a non-empty str.
        """
        if name is not None:
            if not isinstance(name, str) or not name:
                msg = f"{kind}: name must be a non-empty str, got {name!r}"
                raise ConfigError(msg)
            self._names.add(name)
            return name
        candidate, n = kind, 1
        while candidate in self._names:
            n += 1
            candidate = f"{kind}-{n}"
        self._names.add(candidate)
        return candidate


def topology(pipelines: list[Pipeline]) -> list[dict[str, Any]]:
    """The job's shape, which a checkpoint must match to be restored."""
    shape = []
    for pipeline in pipelines:
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
