"""The checkpoint suite (``python -m bench checkpoints``, or ``python -m bench.checkpoints``).

Measures the two targets of the checkpointing issue (#4):

1. **What checkpointing costs**: the demo job (``asyncwait demo``'s data, 1,000,000 events and
   100,000 users, generated once with a fixed seed) run as a user runs it, ``asyncwait run
   job.toml --quiet --json-summary F --loop L`` in a fresh interpreter, without checkpoints
   and with ``[checkpoint] interval = 1.0`` (a checkpoint every second: the sink's output
   goes through part files committed by each checkpoint). The two jobs are alternated and
   the best run of each kept (the median ratio of the back-to-back pairs is printed too).
   Target: checkpointing costs <= 5 % of the events/s (best with / best without). The demo
   job is UNORDERED (its output order depends on when lookups complete, so two runs differ
   in order even without checkpoints); the same pair in ORDERED mode must write
   byte-identical outputs. Every run's output is compared: byte for byte, and as a multiset
   of lines (the same records, each once).
2. **How fast a job recovers**: a job ``jsonl (20,000 events) -> ordered_wait / unordered_wait
   (capacity 10,000) -> jsonl`` whose function blocks for every element after the first
   100, stopped (``env.stop()``, which takes a checkpoint) once 10,000 elements are in flight;
   the checkpoint is read back to check that it holds them (and the stop is timed: to the
   checkpoint's completion, and to the job's end, which cancels the 10,000 calls). The job
   is then restarted with a fast function from that checkpoint: (a) in-process, on a fresh
   event loop, timed from calling ``execute_async()`` to the sink's first ``write()`` of a
   record; (b) in a fresh interpreter, timed from just before ``Popen`` to the first record
   reaching the sink (the child prints ``time.monotonic()`` stamps). Target: emitting again
   within 1 s. Each restart starts from a pristine copy of the stopped job's files, and its
   output is checked: every event exactly once (in input order for ORDERED).

``--quick`` runs 20,000 demo events and a 1,000-element checkpoint of 2,000 events: a smoke
run, the numbers mean nothing. Targets are printed, never asserted. Everything lives in a
temporary directory deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncwait import sinks, sources
from asyncwait._checkpoint.store import CheckpointStore
from asyncwait.cli import demo
from asyncwait.elements import Record, StreamElement
from asyncwait.operator import OutputMode
from asyncwait.runtime import StreamEnvironment
from asyncwait.sinks import Reject, Sink

from ._util import (
    Column,
    CpuSample,
    Options,
    Row,
    SuiteResult,
    available_loops,
    fmt,
    print_table,
    verdict,
)

__all__ = ("main", "restart_child", "run")

ROOT = Path(__file__).resolve().parent.parent
SEED = 20240601
INTERVAL_S = 1.0  # the checkpoint interval of section 1
TARGET_OVERHEAD = 0.05  # checkpointing every second costs <= 5 % of the events/s
TARGET_FIRST_OUTPUT_S = 1.0  # a restored job emits again within 1 s

OVERHEAD = "checkpoint overhead"
RECOVERY = "recovery"
OFF, ON = "off", f"every {INTERVAL_S:g} s"
IN_PROCESS, FRESH = "in-process", "fresh interpreter"


@dataclass(frozen=True, slots=True)
class Sizes:
    """Workload sizes; ``--quick`` shrinks them to a smoke run."""

    events: int  # section 1: demo events
    users: int
    reps: int  # section 1: runs of each UNORDERED (demo) job, best kept
    ordered_reps: int  # section 1: runs of each ORDERED job
    recovery_events: int  # section 2: events in the job's input
    in_flight: int  # section 2: the operator's capacity, all of it in flight at the stop
    fast_first: int  # section 2: elements completing before the function starts blocking
    restarts: int  # section 2: restarts of each kind, best kept


FULL = Sizes(
    events=1_000_000,
    users=100_000,
    reps=3,
    ordered_reps=2,
    recovery_events=20_000,
    in_flight=10_000,
    fast_first=100,
    restarts=3,
)
QUICK = Sizes(
    events=20_000,
    users=10_000,
    reps=1,
    ordered_reps=1,
    recovery_events=2_000,
    in_flight=1_000,
    fast_first=10,
    restarts=1,
)


def _others(start: CpuSample) -> str:
    """How many cores other processes used since ``start`` (machine noise), as text."""
    others = CpuSample.now().others_since(start)
    return "n/a" if others is None else f"{others:.2f} of {os.cpu_count()} cores"


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# ---------------------------------------------------------------------- 1. overhead


@dataclass(frozen=True, slots=True)
class Output:
    """A job's output file, summarised: exact bytes, and the lines as a multiset."""

    sha256: str  # of the bytes, in order
    multiset: int  # sum of the lines' 128-bit hashes mod 2**128: independent of order
    lines: int


def _digest(path: Path) -> Output:
    whole = hashlib.sha256()
    total, lines = 0, 0
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    with open(path, "rb") as file:
        for line in file:
            whole.update(line)
            total += from_bytes(blake2b(line, digest_size=16).digest(), "big")
            lines += 1
    return Output(whole.hexdigest(), total % (1 << 128), lines)


@dataclass(frozen=True, slots=True)
class DemoRun:
    """One ``asyncwait run`` of a demo job: its summary, process figures and output."""

    summary: dict[str, Any]
    wall: float  # seconds from spawn to exit, interpreter start-up included
    cpu: float  # user + system seconds of the child
    output: Output

    @property
    def per_s(self) -> float:
        return float(self.summary["throughput_eps"])

    @property
    def seconds(self) -> float:
        return float(self.summary["duration_s"])

    @property
    def checkpoints(self) -> int:
        cp = self.summary.get("checkpoints")
        return 0 if cp is None else int(cp["completed"])


def _run_demo_job(job: Path, loop: str, events: int) -> DemoRun:
    """``asyncwait run job --quiet --json-summary F --loop L`` in a fresh interpreter."""
    directory = job.parent
    summary_path = directory / f"summary-{job.stem}.json"
    output = directory / demo.OUTPUT_FILE
    shutil.rmtree(directory / "checkpoints", ignore_errors=True)  # every run starts afresh
    output.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "asyncwait",
        "run",
        str(job),
        "--quiet",
        "--json-summary",
        str(summary_path),
        "--loop",
        loop,
    ]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=directory,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"asyncwait run {job} exited with {proc.returncode}:\n{stderr}")
    summary: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
    if summary["status"] != "succeeded" or summary["events_in"] != events:
        raise RuntimeError(f"{job}: unexpected summary {summary}")
    digest = _digest(output)
    output.unlink()  # up to 100 MB: keep disk use low
    leftovers = sorted(p.name for p in directory.glob(f".{demo.OUTPUT_FILE}.part-*"))
    if leftovers:
        print(f"  BUG? part files left behind by {job.name}: {leftovers}")
    return DemoRun(summary, wall, usage.ru_utime + usage.ru_stime, digest)


def _write_jobs(data: demo.DemoData, mode: OutputMode) -> dict[str, Path]:
    """The demo job in ``mode`` (the demo's own is UNORDERED), without and with checkpoints."""
    stem = mode.name.lower()
    off = demo.write_job(data, mode=mode).rename(data.directory / f"job-{stem}.toml")
    on = data.directory / f"job-{stem}-checkpoint.toml"
    on.write_text(
        off.read_text(encoding="utf-8")
        + f'\n[checkpoint]\ninterval = {INTERVAL_S}\ndir = "checkpoints"\n',
        encoding="utf-8",
    )
    return {OFF: off, ON: on}


def overhead(directory: Path, sizes: Sizes, loop: str) -> list[Row]:
    """Section 1: the demo job without and with a checkpoint every second, alternated."""
    n = sizes.events
    started = time.perf_counter()
    data = demo.generate(directory, events=n, users=sizes.users, seed=SEED)
    print(
        f"generated {n:,} demo events ({data.events_path.stat().st_size / 2**20:,.0f} MiB) and "
        f"dim_user ({data.rows:,} of {sizes.users:,} users) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    rows: list[Row] = []
    for mode, reps in (
        (OutputMode.UNORDERED, sizes.reps),
        (OutputMode.ORDERED, sizes.ordered_reps),
    ):
        jobs = _write_jobs(data, mode)
        runs: dict[str, list[DemoRun]] = {OFF: [], ON: []}
        for rep in range(reps):
            # Alternated (off, on / on, off): a drift of the machine hits both alike.
            order = (OFF, ON) if rep % 2 == 0 else (ON, OFF)
            for variant in order:
                done = _run_demo_job(jobs[variant], loop, n)
                runs[variant].append(done)
                print(
                    f"  {mode.name} checkpoints {variant}, run {rep + 1}/{reps}: "
                    f"{done.per_s:,.0f} events/s, job {done.seconds:.2f} s, "
                    f"{done.checkpoints} checkpoints"
                )
                sys.stdout.flush()
        rows.extend(_overhead_rows(mode, loop, n, runs))
    return rows


def _overhead_rows(
    mode: OutputMode, loop: str, n: int, runs: dict[str, list[DemoRun]]
) -> list[Row]:
    best = {variant: max(done, key=lambda r: r.per_s) for variant, done in runs.items()}
    first_off, first_on = runs[OFF][0].output, runs[ON][0].output
    outputs = [done.output for variant in (OFF, ON) for done in runs[variant]]
    same_records = all(
        (o.multiset, o.lines) == (first_off.multiset, first_off.lines) for o in outputs
    )
    counts = {(d.summary["events_out"], d.summary["errors"]) for v in runs for d in runs[v]}
    rows = []
    for variant in (OFF, ON):
        done = best[variant]
        row = Row(
            OVERHEAD,
            loop,
            mode.name + (" (demo)" if mode is OutputMode.UNORDERED else ""),
            variant,
            n,
        )
        row.values = {
            "runs": len(runs[variant]),
            "seconds": done.seconds,
            "wall_s": done.wall,
            "per_s": done.per_s,
            "cpu_us_per_event": done.cpu / n * 1e6,
            "checkpoints": done.checkpoints,
            "all_per_s_min": min(r.per_s for r in runs[variant]),
        }
        if variant == ON:
            ratio = done.per_s / best[OFF].per_s
            row.values["ratio"] = ratio
            # Each repetition ran the two jobs back to back: the median of those pairs' ratios
            # is less sensitive to a slow spell of the machine than one best of each.
            pairs = [on.per_s / off.per_s for on, off in zip(runs[ON], runs[OFF], strict=True)]
            row.values["pair_ratio_median"] = statistics.median(pairs)
            row.values["overhead_pct"] = (1.0 - ratio) * 100
            row.values["byte_identical"] = float(first_on.sha256 == first_off.sha256)
            row.values["same_records"] = float(same_records and len(counts) == 1)
            row.target = f"overhead <= {TARGET_OVERHEAD:.0%}"
            row.met = 1.0 - ratio <= TARGET_OVERHEAD
        elif len(runs[OFF]) > 1:  # the control: two runs without checkpoints
            row.values["byte_identical"] = float(runs[OFF][1].output.sha256 == first_off.sha256)
        row.note = (
            "`asyncwait run job.toml --quiet --json-summary F --loop L` in a subprocess; "
            "events/s and job s from the summary (start-up excluded; the job's last checkpoint "
            "included), process s and CPU include start-up; best of the runs, alternated"
        )
        rows.append(row)
    return rows


def _yes(value: float | None) -> str:
    if value is None:
        return "—"
    return "yes" if value else "NO"


OVERHEAD_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("job", lambda r: r.case, right=False),
    Column("checkpoints", lambda r: r.impl, right=False),
    Column("events", lambda r: f"{r.n:,}"),
    Column("runs", lambda r: fmt(r.values["runs"], ".0f")),
    Column("job s", lambda r: fmt(r.values["seconds"], ".2f")),
    Column("process s", lambda r: fmt(r.values["wall_s"], ".2f")),
    Column("events/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("worst ev/s", lambda r: fmt(r.values["all_per_s_min"], ",.0f")),
    Column("CPU µs/ev", lambda r: fmt(r.values["cpu_us_per_event"], ".2f")),
    Column("taken", lambda r: fmt(r.values["checkpoints"], ".0f")),
    Column("with/without", lambda r: fmt(r.values.get("ratio"), ".3f")),
    Column("overhead", lambda r: fmt(r.values.get("overhead_pct"), "+.1f", " %")),
    Column("pairs median", lambda r: fmt(r.values.get("pair_ratio_median"), ".3f")),
    Column("same bytes", lambda r: _yes(r.values.get("byte_identical"))),
    Column("same records", lambda r: _yes(r.values.get("same_records"))),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
)


# ---------------------------------------------------------------------- 2. recovery


class TimedJsonl(Sink):
    """``sinks.jsonl(path)``, noting the ``time.monotonic()`` of its first record.

    Every checkpoint hook is passed on, so it is as transactional as the file sink it wraps.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(f"timed {path.name}")
        self.inner = sinks.jsonl(path)
        self.first: float | None = None  # time.monotonic() of the first write of a record

    def initialize_state(self, state: Any | None) -> None:
        self.inner.initialize_state(state)

    async def open(self, reject: Reject) -> None:
        await super().open(reject)
        self.first = None
        await self.inner.open(reject)

    def write(self, elements: list[StreamElement]) -> Awaitable[None] | None:
        if self.first is None and any(isinstance(e, Record) for e in elements):
            self.first = time.monotonic()
        return self.inner.write(elements)

    async def pre_commit(self, checkpoint_id: int) -> Any:
        return await self.inner.pre_commit(checkpoint_id)

    async def commit(self, checkpoint_id: int) -> None:
        await self.inner.commit(checkpoint_id)

    async def close(self) -> None:
        await self.inner.close()


@dataclass(frozen=True, slots=True)
class Paths:
    """The files of one recovery job (the same paths every run: they are in its topology)."""

    directory: Path
    mode: OutputMode
    capacity: int

    @property
    def events(self) -> Path:
        return self.directory / "events.jsonl"

    @property
    def out(self) -> Path:
        return self.directory / "out.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.directory / "checkpoints"

    @property
    def pristine(self) -> Path:
        return self.directory.with_name(self.directory.name + "-pristine")

    @property
    def name(self) -> str:
        return f"bench-recovery-{self.mode.name.lower()}"


def _recovery_job(
    paths: Paths, function: Callable[[Any], Awaitable[Any]]
) -> tuple[StreamEnvironment, TimedJsonl]:
    env = StreamEnvironment(checkpoint_dir=paths.checkpoints, name=paths.name)
    stream = env.from_source(sources.jsonl(paths.events))
    if paths.mode is OutputMode.ORDERED:
        stream = stream.ordered_wait(function, capacity=paths.capacity, name="enrich")
    else:
        stream = stream.unordered_wait(function, capacity=paths.capacity, name="enrich")
    return env, stream.sink_to(TimedJsonl(paths.out))


def _write_events(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(
            f'{{"id": {i}, "userID": "user_{i * 7919 % 100_000}", '
            f'"eventTime": "2016-06-06 07:03:42", "eventType": "browse"}}\n'
            for i in range(n)
        )


@dataclass(frozen=True, slots=True)
class Stopped:
    """The stopped job and the checkpoint it left."""

    in_flight: int  # the operator's in-flight count when stop() was called
    checkpoint_s: float  # from stop() to the checkpoint's completion (written, committed)
    stop_s: float  # from stop() to execute_async() returning (the checkpoint included)
    stopped: bool
    checkpoint_id: int
    saved_records: int  # records in the operator stage's state (in flight + rest of batch)
    saved_input: int  # elements saved from its input channel
    checkpoint_bytes: int
    committed: int  # output lines the checkpoint committed


async def _fill_and_stop(paths: Paths, fast_first: int) -> tuple[int, float, float, bool]:
    """Run the job until ``capacity`` elements are in flight, then stop it.

    Returns the in-flight count at the stop, the seconds from ``stop()`` to the checkpoint's
    completion (polled every millisecond) and to the job's end, and whether the result says
    it was stopped.
    """
    loop = asyncio.get_running_loop()
    calls = 0

    async def blocking(value: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > fast_first:
            # Never resolved: waits until the stop cancels it. One future per call, not one
            # shared asyncio.Event: cancelling N waiters of an Event costs O(N**2) (each
            # removes itself from the Event's deque), ~0.5 s for 10,000, which would show in
            # the stop time although asyncwait has no part in it.
            await loop.create_future()
        return value

    env, _ = _recovery_job(paths, blocking)
    task = asyncio.ensure_future(env.execute_async())
    deadline = time.monotonic() + 60
    in_flight = 0
    while in_flight < paths.capacity:
        await asyncio.sleep(0.005)
        if task.done():
            raise RuntimeError(f"{paths.name} ended before {paths.capacity} were in flight")
        if time.monotonic() > deadline:
            task.cancel()
            raise RuntimeError(f"{paths.name}: only {in_flight} in flight after 60 s")
        operators = env.progress().operators
        in_flight = operators[0].in_flight if operators else 0
    started = time.monotonic()
    env.stop()
    # Polled: a job offers no event for "checkpoint completed".
    while env.progress().checkpoints == 0 and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    checkpointed = time.monotonic() - started
    result = await task
    return in_flight, checkpointed, time.monotonic() - started, result.stopped


def _stop(paths: Paths, fast_first: int) -> Stopped:
    """Fill the job, stop it, and read back the checkpoint the stop took."""
    with asyncio.Runner() as runner:
        in_flight, checkpoint_s, stop_s, stopped = runner.run(_fill_and_stop(paths, fast_first))
    store = CheckpointStore(paths.checkpoints, paths.name, 3)
    checkpoint = store.latest()
    if checkpoint is None:
        raise RuntimeError(f"{paths.name}: stopped, but no checkpoint in {store.dir}")
    operator_state = checkpoint.stages[1]
    saved = sum(1 for e in operator_state["elements"] if isinstance(e, Record))
    with open(paths.out, "rb") as out:
        committed = sum(1 for _ in out)
    return Stopped(
        in_flight=in_flight,
        checkpoint_s=checkpoint_s,
        stop_s=stop_s,
        stopped=stopped,
        checkpoint_id=checkpoint.id,
        saved_records=saved,
        saved_input=len(operator_state["input"]),
        checkpoint_bytes=store.path(checkpoint.id).stat().st_size,
        committed=committed,
    )


def _keep_pristine(paths: Paths) -> None:
    """Copy the stopped job's output, part files and checkpoints aside."""
    shutil.rmtree(paths.pristine, ignore_errors=True)
    paths.pristine.mkdir()
    shutil.copytree(paths.checkpoints, paths.pristine / paths.checkpoints.name)
    for path in paths.directory.glob(f"*{paths.out.name}*"):  # the output and its part files
        shutil.copy2(path, paths.pristine / path.name)


def _back_to_pristine(paths: Paths) -> None:
    """Put the files back to what the stop left (a restart consumes the checkpoint)."""
    shutil.rmtree(paths.checkpoints, ignore_errors=True)
    for path in paths.directory.glob(f"*{paths.out.name}*"):
        path.unlink()
    shutil.copytree(paths.pristine / paths.checkpoints.name, paths.checkpoints)
    for path in paths.pristine.glob(f"*{paths.out.name}*"):
        shutil.copy2(path, paths.directory / path.name)


async def _fast(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Restart:
    """One restored run, in ``time.monotonic()`` seconds."""

    started: float  # just before execute_async() (in-process) / Popen (fresh interpreter)
    first: float  # the first record reached the sink
    ended: float  # execute_async() returned
    restored_from: int | None
    events_out: int
    stages: dict[str, float] = field(default_factory=dict)  # fresh interpreter: its steps

    @property
    def first_s(self) -> float:
        return self.first - self.started

    @property
    def finish_s(self) -> float:
        return self.ended - self.started


async def _restart(paths: Paths) -> Restart:
    """Run the job from its checkpoint with a fast function; time its first output."""
    env, sink = _recovery_job(paths, _fast)
    started = time.monotonic()
    result = await env.execute_async()
    ended = time.monotonic()
    if sink.first is None:
        raise RuntimeError(f"{paths.name}: the restored run wrote nothing")
    return Restart(started, sink.first, ended, result.restored_from, result.events_out)


def restart_child(t0: float, t1: float, argv: Sequence[str]) -> int:
    """The fresh interpreter's side of a restart: ``mode directory capacity``; prints JSON.

    ``t0``: ``time.monotonic()`` when the child's code began; ``t1``: after ``import asyncwait``.
    """
    imported = time.monotonic()
    mode, directory, capacity = argv
    paths = Paths(Path(directory), OutputMode[mode], int(capacity))
    done = asyncio.run(_restart(paths))
    stamps = {
        "t0": t0,
        "asyncwait": t1,
        "imported": imported,
        "execute": done.started,
        "first": done.first,
        "ended": done.ended,
        "restored_from": done.restored_from,
        "events_out": done.events_out,
    }
    print(json.dumps(stamps))
    return 0


_CHILD = (
    "import time; t0 = time.monotonic()\n"
    "import asyncwait; t1 = time.monotonic()\n"
    "import sys\n"
    "from bench.checkpoints import restart_child\n"
    "sys.exit(restart_child(t0, t1, sys.argv[1:]))\n"
)


def _restart_in_process(paths: Paths) -> Restart:
    gc.collect()
    with asyncio.Runner() as runner:
        return runner.run(_restart(paths))


def _restart_fresh(paths: Paths) -> Restart:
    args = [paths.mode.name, str(paths.directory), str(paths.capacity)]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        cwd=ROOT,
        env=_child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"restart of {paths.name} exited with {done.returncode}:\n{done.stderr}")
    stamps = json.loads(done.stdout.strip().splitlines()[-1])
    return Restart(
        started,
        stamps["first"],
        stamps["ended"],
        stamps["restored_from"],
        stamps["events_out"],
        stages={
            "startup_s": stamps["t0"] - started,  # fork, exec, interpreter, site
            "import_asyncwait_s": stamps["asyncwait"] - stamps["t0"],
            "imports_s": stamps["imported"] - stamps["t0"],  # asyncwait and bench.checkpoints
            "exec_to_first_s": stamps["first"] - stamps["execute"],
        },
    )


def _exactly_once(paths: Paths, n: int) -> bool:
    """Whether the output holds every event once (in input order for ORDERED)."""
    with open(paths.out, encoding="utf-8") as out:
        ids = [json.loads(line)["id"] for line in out]
    if paths.mode is OutputMode.UNORDERED:
        ids.sort()
    return ids == list(range(n))


def recovery(workdir: Path, sizes: Sizes) -> list[Row]:
    """Section 2: stop with ``in_flight`` elements in flight, restart, time the first output."""
    n, capacity = sizes.recovery_events, sizes.in_flight
    rows: list[Row] = []
    for mode in (OutputMode.ORDERED, OutputMode.UNORDERED):
        paths = Paths(workdir / f"recovery-{mode.name.lower()}", mode, capacity)
        paths.directory.mkdir()
        _write_events(paths.events, n)
        stopped = _stop(paths, sizes.fast_first)
        print(
            f"  {mode.name}: stopped={stopped.stopped} with {stopped.in_flight:,} in flight: "
            f"checkpoint after {stopped.checkpoint_s:.3f} s, job ended after "
            f"{stopped.stop_s:.3f} s; checkpoint {stopped.checkpoint_id} "
            f"({stopped.checkpoint_bytes / 1024:,.0f} KiB) holds {stopped.saved_records:,} "
            f"operator records and {stopped.saved_input:,} input elements; "
            f"{stopped.committed:,} output lines committed"
        )
        if stopped.saved_records < capacity:
            print(f"  BUG? the checkpoint holds {stopped.saved_records} of {capacity} in flight")
        _keep_pristine(paths)
        runs: dict[str, list[Restart]] = {IN_PROCESS: [], FRESH: []}
        correct: dict[str, bool] = {IN_PROCESS: True, FRESH: True}
        for _ in range(sizes.restarts):
            for kind, restart in ((IN_PROCESS, _restart_in_process), (FRESH, _restart_fresh)):
                _back_to_pristine(paths)
                done = restart(paths)
                ok = done.restored_from == stopped.checkpoint_id and _exactly_once(paths, n)
                correct[kind] = correct[kind] and ok
                runs[kind].append(done)
                print(
                    f"  {mode.name} restart {kind}: first record after {done.first_s:.3f} s, "
                    f"finished after {done.finish_s:.3f} s; restored from "
                    f"{done.restored_from}; every event exactly once: {ok}"
                )
                sys.stdout.flush()
        for kind, done_runs in runs.items():
            best = min(done_runs, key=lambda r: r.first_s)
            row = Row(RECOVERY, "asyncio", mode.name, kind, capacity)
            row.values = {
                "runs": len(done_runs),
                "events": n,
                "stop_checkpoint_s": stopped.checkpoint_s,
                "stop_s": stopped.stop_s,
                "saved_records": stopped.saved_records,
                "checkpoint_kib": stopped.checkpoint_bytes / 1024,
                "first_output_s": best.first_s,
                "first_output_worst_s": max(r.first_s for r in done_runs),
                "finish_s": min(r.finish_s for r in done_runs),
                "exactly_once": float(correct[kind]),
                **best.stages,
            }
            row.target = f"first output <= {TARGET_FIRST_OUTPUT_S:g} s"
            row.met = best.first_s <= TARGET_FIRST_OUTPUT_S
            row.note = (
                "in-process: from calling execute_async() on a fresh loop to the sink's first "
                "write() of a record; fresh interpreter: from just before Popen (`python -c`, "
                "importing asyncwait and bench.checkpoints) to the same; finish: to the end "
                "of the restored job (its final checkpoint committed); best of the restarts"
            )
            rows.append(row)
        shutil.rmtree(paths.pristine, ignore_errors=True)
    return rows


RECOVERY_COLUMNS = (
    Column("mode", lambda r: r.case, right=False),
    Column("restart", lambda r: r.impl, right=False),
    Column("in flight", lambda r: f"{r.n:,}"),
    Column("saved", lambda r: fmt(r.values["saved_records"], ",.0f")),
    Column("ckpt KiB", lambda r: fmt(r.values["checkpoint_kib"], ",.0f")),
    Column("stop: ckpt s", lambda r: fmt(r.values["stop_checkpoint_s"], ".3f")),
    Column("stop: end s", lambda r: fmt(r.values["stop_s"], ".3f")),
    Column("runs", lambda r: fmt(r.values["runs"], ".0f")),
    Column("start-up s", lambda r: fmt(r.values.get("startup_s"), ".3f")),
    Column("import asyncwait s", lambda r: fmt(r.values.get("import_asyncwait_s"), ".3f")),
    Column("all imports s", lambda r: fmt(r.values.get("imports_s"), ".3f")),
    Column("first output s", lambda r: fmt(r.values["first_output_s"], ".3f")),
    Column("worst s", lambda r: fmt(r.values["first_output_worst_s"], ".3f")),
    Column("finish s", lambda r: fmt(r.values["finish_s"], ".3f")),
    Column("exactly once", lambda r: _yes(r.values["exactly_once"])),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
)


# ---------------------------------------------------------------------- the suite


def _print_section(title: str, columns: Sequence[Column], rows: Sequence[Row]) -> None:
    print_table(title, columns, rows)
    for note in sorted({row.note for row in rows if row.note}):
        print(f"  ({note})")
    sys.stdout.flush()


def run(options: Options, *, events: int | None = None, reps: int | None = None) -> SuiteResult:
    """Measure both targets and print a table per section.

    ``events`` overrides the demo's event count, ``reps`` the runs of each demo job.
    """
    sizes = QUICK if options.quick else FULL
    if events is not None or reps is not None:
        sizes = Sizes(
            events=events if events is not None else sizes.events,
            users=sizes.users,
            reps=reps if reps is not None else sizes.reps,
            ordered_reps=reps if reps is not None else sizes.ordered_reps,
            recovery_events=sizes.recovery_events,
            in_flight=sizes.in_flight,
            fast_first=sizes.fast_first,
            restarts=sizes.restarts,
        )
    loops, notes = available_loops()
    # The loop `asyncwait run` uses by default: uvloop when installed.
    loop = "uvloop" if any(candidate.name == "uvloop" for candidate in loops) else "asyncio"
    result = SuiteResult("checkpoints", notes=list(notes))
    if options.quick:
        result.notes.append("--quick: tiny workloads, the numbers are not meaningful")
    result.notes.append(
        f"demo data: {sizes.events:,} events, {sizes.users:,} users, seed {SEED}, loop {loop}; "
        f"best of {sizes.reps} (UNORDERED) and {sizes.ordered_reps} (ORDERED) runs, alternated; "
        f"recovery: {sizes.recovery_events:,} events, {sizes.in_flight:,} in flight, best of "
        f"{sizes.restarts} restarts of each kind"
    )
    for note in result.notes:
        print(f"note: {note}")
    sys.stdout.flush()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asyncwait-bench-") as tmp:
        workdir = Path(tmp)
        cpu = CpuSample.now()
        overhead_rows = overhead(workdir / "demo", sizes, loop)
        shutil.rmtree(workdir / "demo")
        result.rows.extend(overhead_rows)
        load = f"other processes used {_others(cpu)} during section 1"
        result.notes.append(load)
        _print_section(
            f"1. checkpointing every {INTERVAL_S:g} s on the demo job: {sizes.events:,} events, "
            f"{sizes.users:,} users (target: overhead <= {TARGET_OVERHEAD:.0%})",
            OVERHEAD_COLUMNS,
            overhead_rows,
        )
        print(f"  ({load})")

        cpu = CpuSample.now()
        recovery_rows = recovery(workdir, sizes)
        result.rows.extend(recovery_rows)
        load = f"other processes used {_others(cpu)} during section 2"
        result.notes.append(load)
        _print_section(
            f"2. recovery from a checkpoint of {sizes.in_flight:,} in-flight elements "
            f"(target: first output <= {TARGET_FIRST_OUTPUT_S:g} s after the restart)",
            RECOVERY_COLUMNS,
            recovery_rows,
        )
        print(f"  ({load})")
    result.seconds = time.perf_counter() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.checkpoints [--quick] [--events N] [--reps R] [--json FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoints", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny workloads: a smoke run")
    parser.add_argument("--events", type=int, help="demo events of section 1 (default 1,000,000)")
    parser.add_argument("--reps", type=int, help="runs of each demo job (default 3 / 2)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also save results as JSON")
    args = parser.parse_args(argv)
    result = run(Options(quick=args.quick), events=args.events, reps=args.reps)
    if args.json is not None:
        args.json.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
