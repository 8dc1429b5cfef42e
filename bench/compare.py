"""Old vs new tree: ``python -m bench compare [--baseline REV] [--new REV2] [--quick] ...``.

Measures the same workloads against two source trees in one run and prints new/old ratios:
the *old* tree is a temporary ``git worktree`` of ``REV`` (default :data:`BASELINE_REV`,
removed afterwards), the *new* tree is this checkout, uncommitted changes included, or with
``--new REV2`` another temporary worktree (the bench code is this checkout's either way). Every
measurement runs in a fresh interpreter whose ``PYTHONPATH`` puts that tree's ``src`` first
(the virtualenv provides every dependency), and the workloads use only public API (the CLI,
``AsyncWaitOperator``, the ``*_wait`` helpers, ``StreamEnvironment``), so the same code
measures the package before and after its internals move.

1. **The demo job end to end**: ``python -m asyncwait run job.toml --quiet --json-summary F
   --loop L`` on data the bench writes once (``bench/_demodata.py``: the demo's events,
   ``dim_user`` table and job file with its LRU cache), on each available loop; runs
   alternate between the trees, best of 3 (1 with ``--quick``). Events/s come from the
   job's summary (``events_in / duration_s``: interpreter start-up excluded). Target: new
   >= :data:`DEMO_TARGET` x old. Also printed: the child's CPU time per event (``wait4``,
   start-up included, least of the runs), which other processes disturb less than wall
   time, and its old/new ratio; and the median of the new/old ratios of the runs made back
   to back.
2. **Instructions per element** (callgrind, asyncio's loop, so the machine's load does not
   matter): the demo job through the CLI, the push API (ORDERED, UNORDERED), the three
   iterator helpers and a lookup join with an LRU cache in ``StreamEnvironment``, all at
   zero latency (``bench/_workload.py``). Each figure is the difference between two sizes
   divided by the difference in elements, so interpreter start-up and imports cancel out.
   The demo job runs once per size; the other workloads run in one process per tree,
   callgrind dumping its counters around each run (``--dump-before=getppid``), after a
   warm-up run of the same workload. Target: new/old <= :data:`MAX_RATIO` on every row.
   The demo job here has a lookup timeout of :data:`CALLGRIND_JOB_TIMEOUT` s instead of 5 s:
   callgrind runs Python ~35 times slower, and a busy machine slower still.

``--no-callgrind`` (or no ``valgrind`` on ``PATH``) replaces section 2's instruction
counts with wall-clock µs per element of the larger run: quick, noisy, only a check that
every workload still runs against both trees (the smoke test uses it). Comparing a tree
with itself (``--baseline HEAD`` on a clean checkout) checks the harness: every ratio
should come out at about 1.00.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._demodata import write_events, write_job, write_users
from ._util import Column, Options, Row, SuiteResult, available_loops, fmt, print_table, verdict

__all__ = ("BASELINE_REV", "callgrind_totals", "run")

ROOT = Path(__file__).resolve().parent.parent

BASELINE_REV = "963a9dae9255b190a57d1443fd02aa8488906b67"
"""The default old tree: 963a9da, the commit the architecture review of 2026-12-07
examined, i.e. the package before the restructuring that review proposes (the one commit
after it on ``main``, a461dc2, only adds ``_checks.py``, which nothing imports yet)."""

DEMO_TARGET = 1.3  # the demo job end to end: new events/s >= 1.3 x old
MAX_RATIO = 1.03  # instructions per element: new <= 1.03 x old on every row
SEED = 20240601
CALLGRIND_JOB_TIMEOUT = 3600.0  # seconds: the demo job's lookup timeout in section 2
CALLGRIND_LOOP = "asyncio"  # its Python loop is part of the count, as users mostly run it

DEMO = "demo end to end"
INSTRUCTIONS = "instructions"


@dataclass(frozen=True, slots=True)
class Sizes:
    """Workload sizes; ``--quick`` shrinks them to a smoke run."""

    events: int  # section 1
    users: int
    reps: int
    demo_counts: tuple[int, int]  # section 2: the demo job at two sizes
    demo_users: int
    op_counts: tuple[int, int, int]  # section 2: warm-up, small and large run of a workload
    join_users: int


# Section 2 counts ~10 billion instructions per tree: ~8 minutes under callgrind on two busy
# cores, most of the suite's ~10. Larger sizes would add time without steadying figures that
# already repeat to ~0.1 % (0.7 % for the lookup join, which waits on aiosqlite's thread).
FULL = Sizes(
    events=300_000,
    users=30_000,  # the demo's proportions: 10 events per user
    reps=3,
    demo_counts=(20_000, 40_000),
    demo_users=4_000,
    op_counts=(500, 2_000, 8_000),
    join_users=1_000,
)
QUICK = Sizes(
    events=4_000,
    users=400,
    reps=1,
    demo_counts=(1_000, 2_000),
    demo_users=400,
    op_counts=(50, 200, 800),
    join_users=100,
)

WORKLOADS = {  # bench/_workload.py's names, and what each runs
    "push-ordered": "AsyncWaitOperator ORDERED, C=100, timeout 5 s, process_element per value",
    "push-unordered": "AsyncWaitOperator UNORDERED, C=100, timeout 5 s, process_element",
    "ordered_wait": "ordered_wait(range(n), echo, capacity=100)",
    "unordered_wait": "unordered_wait(range(n), echo, capacity=100)",
    "key_ordered_wait": "key_ordered_wait(..., key=v % 1000, capacity=100)",
    "lookup-join": "StreamEnvironment: from_collection -> lookup_join(sqlite, LRU) -> collect",
}
DEMO_JOB = "demo job (CLI)"


# ---------------------------------------------------------------------- the two trees


@dataclass(frozen=True, slots=True)
class Tree:
    """One source tree to measure: its root (holding ``src/``) and what it is."""

    label: str  # "old" or "new"
    root: Path
    description: str

    def env(self, *, bench: bool = False) -> dict[str, str]:
        """The environment of a child measuring this tree.

        ``PYTHONPATH`` is replaced, not extended: the tree's ``src`` comes first (ahead of
        the virtualenv's editable install of whatever checkout it was made from), then, for
        ``bench._workload``, this checkout's bench package. A fixed hash seed makes every
        run hash strings alike, so instruction counts repeat from run to run.
        """
        env = dict(os.environ)
        paths = [self.root / "src", *([ROOT] if bench else [])]
        env["PYTHONPATH"] = os.pathsep.join(str(path) for path in paths)
        env["PYTHONHASHSEED"] = "0"
        return env


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@contextlib.contextmanager
def _worktree(rev: str, path: Path, label: str) -> Iterator[Tree]:
    """A detached ``git worktree`` of ``rev`` at ``path``, removed on the way out."""
    commit = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    _git("worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        subject = _git("log", "-1", "--format=%h %<(60,trunc)%s", commit).rstrip()
        yield Tree(label, path, f"{subject} ({rev})")
    finally:
        try:
            _git("worktree", "remove", "--force", str(path))
        except RuntimeError:
            shutil.rmtree(path, ignore_errors=True)
            _git("worktree", "prune")


def _this_tree() -> Tree:
    head = _git("log", "-1", "--format=%h %<(60,trunc)%s").rstrip()
    dirty = " + uncommitted changes" if _git("status", "--porcelain") else ""
    return Tree("new", ROOT, f"{head} (this checkout{dirty})")


def _prepare(tree: Tree) -> None:
    """Compile the tree's sources and check that a child imports asyncwait from them.

    Compiling first matters for the instruction counts: a child that finds no ``.pyc``
    compiles the modules it imports, and only the first run of a fresh worktree would pay.
    """
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", str(tree.root / "src")],
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        [sys.executable, "-c", "import asyncwait; print(asyncwait.__file__)"],
        env=tree.env(),
        cwd=tree.root,
        capture_output=True,
        text=True,
        check=True,
    )
    _check_origin(tree, done.stdout.strip())


def _check_origin(tree: Tree, module_file: str) -> None:
    if not Path(module_file).resolve().is_relative_to((tree.root / "src").resolve()):
        raise RuntimeError(f"the {tree.label} tree's child imported asyncwait from {module_file}")


# ---------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Data:
    """Everything the runs read, written once into the temporary directory."""

    events: Path  # section 1
    db: Path
    demo_events: tuple[Path, Path]  # section 2: the demo job's small and large inputs
    demo_db: Path
    join_db: Path  # section 2: the lookup join's table


def _write_data(work: Path, sizes: Sizes) -> Data:
    started = time.perf_counter()
    events, db = work / "events.jsonl", work / "dim_user.db"
    write_events(events, events=sizes.events, users=sizes.users, seed=SEED)
    write_users(db, users=sizes.users, seed=SEED)
    small_n, large_n = sizes.demo_counts
    small, large = work / "cg-events-small.jsonl", work / "cg-events-large.jsonl"
    write_events(large, events=large_n, users=sizes.demo_users, seed=SEED)
    # The small input is the large one's first lines: the difference is the events after.
    with large.open(encoding="utf-8") as whole, small.open("w", encoding="utf-8") as head:
        for _, line in zip(range(small_n), whole, strict=False):
            head.write(line)
    demo_db = work / "cg-dim_user.db"
    write_users(demo_db, users=sizes.demo_users, seed=SEED)
    join_db = work / "join-dim_user.db"
    write_users(join_db, users=sizes.join_users, seed=SEED)
    print(
        f"wrote {sizes.events:,} events ({events.stat().st_size / 2**20:,.1f} MiB) and "
        f"dim_user ({sizes.users:,} users) in {time.perf_counter() - started:.1f} s"
    )
    sys.stdout.flush()
    return Data(events, db, (small, large), demo_db, join_db)


def _job(
    directory: Path, events: Path, db: Path, count: int, users: int, *, timeout: float = 5.0
) -> Path:
    """A demo job file in its own directory (its outputs land there), reading shared data."""
    directory.mkdir(parents=True, exist_ok=True)
    job = directory / "job.toml"
    write_job(job, events=count, users=users, events_path=events, db=db, timeout=timeout)
    return job


# ---------------------------------------------------------------------- child processes


@dataclass(frozen=True, slots=True)
class Child:
    """A finished child process: wall and CPU seconds, and its stdout."""

    wall: float
    cpu: float  # user + system, the child's own (wait4), start-up included
    stdout: str


def _run(command: Sequence[str], *, env: dict[str, str], cwd: Path, what: str) -> Child:
    """Run ``command`` to the end, or raise with its stderr.

    ``wait4`` gives this child's own CPU time (``RUSAGE_CHILDREN`` would mix in the other
    children running at the same time); output goes through files, so a chatty child never
    blocks on a full pipe while we wait.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited with {proc.returncode}:\n{stderr[-4000:]}")
    return Child(wall, usage.ru_utime + usage.ru_stime, stdout)


_TOTAL = re.compile(r"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


def callgrind_totals(out: Path) -> list[int]:
    """Instructions in each part of a callgrind profile, in order.

    With ``--callgrind-out-file=OUT`` callgrind writes one file per dump (``OUT.1``,
    ``OUT.2``, ...), each counting from the previous dump, and ``OUT`` for the rest up to
    the exit; each holds a ``totals:`` (or ``summary:``) line.
    """
    dumps = sorted(
        (path for path in out.parent.glob(out.name + ".*") if path.suffix[1:].isdigit()),
        key=lambda path: int(path.suffix[1:]),
    )
    totals: list[int] = []
    for path in [*dumps, out]:
        match = _TOTAL.search(path.read_text(encoding="utf-8", errors="replace"))
        if match is None:
            raise RuntimeError(f"no instruction total in {path}")
        totals.append(int(match.group(1)))
    return totals


def _under_callgrind(command: Sequence[str], *, out: Path, marks: bool = False) -> list[str]:
    options = ["valgrind", "--tool=callgrind", "-q", f"--callgrind-out-file={out}"]
    if marks:
        options.append("--dump-before=getppid")  # bench._workload's marks
    return [*options, *command]


@dataclass(frozen=True, slots=True)
class JobRun:
    """One ``asyncwait run``: the process's figures and the job's JSON summary."""

    child: Child
    summary: dict[str, Any]

    @property
    def seconds(self) -> float:
        return float(self.summary["duration_s"])

    @property
    def per_s(self) -> float:
        return float(self.summary["events_in"]) / self.seconds


def _run_job(
    tree: Tree, job: Path, loop: str, events: int, *, callgrind_out: Path | None = None
) -> JobRun:
    summary_path = job.with_name("summary.json")
    command = [sys.executable, "-m", "asyncwait", "run", str(job), "--quiet"]
    command += ["--json-summary", str(summary_path), "--loop", loop]
    if callgrind_out is not None:
        command = _under_callgrind(command, out=callgrind_out)
    child = _run(command, env=tree.env(), cwd=job.parent, what=f"{tree.label}: {job}")
    summary: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
    summary_path.unlink()
    for name in ("enriched.jsonl", "errors.jsonl"):
        (job.parent / name).unlink(missing_ok=True)
    if summary.get("status") != "succeeded" or summary.get("events_in") != events:
        raise RuntimeError(f"{tree.label} tree, {job}: unexpected summary {summary}")
    return JobRun(child, summary)


def _run_workloads(
    tree: Tree,
    runs: Sequence[tuple[str, int]],
    data: Data,
    users: int,
    work: Path,
    *,
    callgrind: bool,
) -> list[float]:
    """Run ``bench._workload`` once for ``runs``; the cost of each run, in order.

    The cost is instructions under callgrind, else wall seconds.
    """
    command = [sys.executable, "-m", "bench._workload", "--loop", CALLGRIND_LOOP, "--marks"]
    command += ["--db", str(data.join_db), "--users", str(users)]
    command += [f"{name}:{n}" for name, n in runs]
    out = work / "callgrind.out"
    if callgrind:
        command = _under_callgrind(command, out=out, marks=True)
    child = _run(command, env=tree.env(bench=True), cwd=work, what=f"{tree.label}: workloads")
    lines = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    _check_origin(tree, lines[0]["asyncwait"])
    records = lines[1:]
    if [(r["name"], r["n"]) for r in records] != list(runs):
        raise RuntimeError(f"{tree.label}: the workloads reported {records}, not {runs}")
    for record in records:
        if record["outputs"] != record["n"]:
            raise RuntimeError(f"{tree.label}: {record['name']} emitted {record}")
    if not callgrind:
        return [float(record["seconds"]) for record in records]
    # Parts: start-up, then per run: the run (between its two marks), then what follows.
    totals = callgrind_totals(out)
    if len(totals) != 2 * len(runs) + 1:
        raise RuntimeError(
            f"{tree.label}: callgrind wrote {len(totals)} parts for {len(runs)} runs; "
            "is os.getppid() called somewhere else?"
        )
    return [float(totals[2 * i + 1]) for i in range(len(runs))]


# ---------------------------------------------------------------------- 1. end to end


def demo_end_to_end(
    trees: Sequence[Tree], data: Data, sizes: Sizes, loops: Sequence[str], work: Path
) -> list[Row]:
    jobs = {
        tree.label: _job(
            work / f"e2e-{tree.label}", data.events, data.db, sizes.events, sizes.users
        )
        for tree in trees
    }
    runs: dict[tuple[str, str], list[JobRun]] = {}
    for rep in range(sizes.reps):
        # Alternate which tree goes first, so a drift of the machine favours neither.
        order = trees if rep % 2 == 0 else list(reversed(trees))
        for loop in loops:
            for tree in order:
                job = jobs[tree.label]
                runs.setdefault((loop, tree.label), []).append(
                    _run_job(tree, job, loop, sizes.events)
                )
    rows: list[Row] = []
    for loop in loops:
        best = {
            label: max(runs[loop, label], key=lambda run: run.per_s) for label in ("old", "new")
        }
        least_cpu = {
            label: min(run.child.cpu for run in runs[loop, label]) for label in ("old", "new")
        }
        for tree in trees:
            mine = runs[loop, tree.label]
            run = best[tree.label]
            row = Row(DEMO, loop, tree.label, "cli", sizes.events)
            row.values = {
                "runs": len(mine),
                "seconds": run.seconds,
                "wall_s": run.child.wall,
                "per_s": run.per_s,
                "spread": run.per_s / min(r.per_s for r in mine),
                # CPU time suffers less than wall time from other processes on the machine.
                "cpu_us_per_event": least_cpu[tree.label] / sizes.events * 1e6,
            }
            if tree.label == "new":
                row.values["ratio"] = run.per_s / best["old"].per_s
                row.values["cpu_ratio"] = least_cpu["old"] / least_cpu["new"]
                # Each repetition ran old and new back to back: the median of those pairs'
                # ratios is less sensitive to the machine drifting between repetitions.
                pairs = zip(runs[loop, "old"], runs[loop, "new"], strict=True)
                row.values["pair_median"] = statistics.median(
                    new_run.per_s / old_run.per_s for old_run, new_run in pairs
                )
                row.target = f">= {DEMO_TARGET:g}x old"
                row.met = row.values["ratio"] >= DEMO_TARGET
            rows.append(row)
    return rows


DEMO_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("tree", lambda r: r.case, right=False),
    Column("events", lambda r: f"{r.n:,}"),
    Column("runs", lambda r: f"{r.values['runs']:.0f}"),
    Column("job s", lambda r: fmt(r.values["seconds"], ".2f")),
    Column("process s", lambda r: fmt(r.values["wall_s"], ".2f")),
    Column("events/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("best/worst", lambda r: fmt(r.values["spread"], ".2f")),
    Column("CPU µs/ev", lambda r: fmt(r.values["cpu_us_per_event"], ".2f")),
    Column("old/new CPU", lambda r: fmt(r.values.get("cpu_ratio"), ".3f", "x")),
    Column("median pair", lambda r: fmt(r.values.get("pair_median"), ".3f", "x")),
    Column("new/old ev/s", lambda r: fmt(r.values.get("ratio"), ".3f", "x")),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
)


# ---------------------------------------------------------------------- 2. per element


def per_element(
    trees: Sequence[Tree], data: Data, sizes: Sizes, work: Path, *, callgrind: bool
) -> list[Row]:
    """Cost per element of every workload on both trees (instructions, or µs without)."""
    warm, small_n, large_n = sizes.op_counts
    runs = [(name, n) for name in WORKLOADS for n in (warm, small_n, large_n)]
    demo_small, demo_large = sizes.demo_counts
    costs: dict[tuple[str, str], dict[int, float]] = {}

    def demo_cost(tree: Tree, index: int) -> float:
        n = sizes.demo_counts[index]
        directory = work / f"cg-{tree.label}-{n}"
        # Under callgrind, and on a busy machine, a lookup can take longer than the demo's
        # 5 s timeout; the timeout's cost per event is the same whatever its length.
        job = _job(
            directory,
            data.demo_events[index],
            data.demo_db,
            n,
            sizes.demo_users,
            timeout=CALLGRIND_JOB_TIMEOUT,
        )
        out = directory / "callgrind.out"
        run = _run_job(tree, job, CALLGRIND_LOOP, n, callgrind_out=out if callgrind else None)
        return float(callgrind_totals(out)[-1]) if callgrind else run.seconds

    def workload_costs(tree: Tree) -> list[float]:
        directory = work / f"cg-{tree.label}-workloads"
        directory.mkdir()
        return _run_workloads(tree, runs, data, sizes.join_users, directory, callgrind=callgrind)

    # Callgrind counts do not depend on the machine's load, so the runs may share the cores;
    # wall-clock runs go one at a time.
    workers = min(2, os.cpu_count() or 1) if callgrind else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Longest first (the large demo run, the workloads, the small demo run), old and new
        # alternating, so that the workers finish at about the same time.
        larger = [(tree, pool.submit(demo_cost, tree, 1)) for tree in trees]
        batches = [(tree, pool.submit(workload_costs, tree)) for tree in trees]
        smaller = [(tree, pool.submit(demo_cost, tree, 0)) for tree in trees]
        for index, demo_runs in ((1, larger), (0, smaller)):
            for tree, future in demo_runs:
                costs.setdefault((tree.label, DEMO_JOB), {})[sizes.demo_counts[index]] = (
                    future.result()
                )
        for tree, batch in batches:
            for (name, n), cost in zip(runs, batch.result(), strict=True):
                costs.setdefault((tree.label, name), {})[n] = cost

    rows: list[Row] = []
    for name in (DEMO_JOB, *WORKLOADS):
        small, large = (demo_small, demo_large) if name == DEMO_JOB else (small_n, large_n)
        per: dict[str, float] = {}
        for tree in trees:
            mine = costs[tree.label, name]
            if callgrind:
                per[tree.label] = (mine[large] - mine[small]) / (large - small)
            else:  # seconds of the larger run -> µs per element
                per[tree.label] = mine[large] / large * 1e6
        row = Row(INSTRUCTIONS, CALLGRIND_LOOP, name, "callgrind" if callgrind else "wall", large)
        row.values = {
            "small": small,
            "old_per_el": per["old"],
            "new_per_el": per["new"],
            "ratio": per["new"] / per["old"],
        }
        if callgrind:  # the target is on instructions; wall-clock ratios only show it ran
            row.target = f"<= {MAX_RATIO:g}"
            row.met = row.values["ratio"] <= MAX_RATIO
        row.note = f"{name}: " + (
            "`asyncwait run job.toml --loop asyncio`, the demo's job (LRU cache), "
            f"{sizes.demo_users:,} users"
            if name == DEMO_JOB
            else WORKLOADS[name]
        )
        rows.append(row)
    return rows


def _instruction_columns(callgrind: bool) -> tuple[Column, ...]:
    unit, spec = ("Ir/el", ",.0f") if callgrind else ("µs/el", ".2f")
    return (
        Column("workload", lambda r: r.case, right=False),
        Column("sizes", lambda r: f"{r.values['small']:,.0f}->{r.n:,}"),
        Column(f"old {unit}", lambda r: fmt(r.values["old_per_el"], spec)),
        Column(f"new {unit}", lambda r: fmt(r.values["new_per_el"], spec)),
        Column("new/old", lambda r: fmt(r.values["ratio"], ".4f")),
        Column("target", lambda r: r.target, right=False),
        Column("", verdict, right=False),
    )


# ---------------------------------------------------------------------- the suite


def _print_section(title: str, columns: Sequence[Column], rows: Sequence[Row]) -> None:
    print_table(title, columns, rows)
    for note in dict.fromkeys(row.note for row in rows if row.note):
        print(f"  ({note})")
    sys.stdout.flush()


def run(options: Options) -> SuiteResult:
    """Set up the old tree, write the data, measure both trees, print both tables."""
    sizes = QUICK if options.quick else FULL
    rev = options.baseline or BASELINE_REV
    result = SuiteResult("compare")
    callgrind = options.callgrind
    if callgrind and shutil.which("valgrind") is None:
        callgrind = False
        result.notes.append("valgrind is not on PATH: section 2 times the runs instead")
    if not options.callgrind:
        result.notes.append("--no-callgrind: section 2 is wall-clock time, not instructions")
    if options.quick:
        result.notes.append("--quick: tiny workloads, the numbers are not meaningful")
    loops = [loop.name for loop in available_loops()[0]]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asyncwait-compare-") as tmp:
        work = Path(tmp)
        with contextlib.ExitStack() as worktrees:
            old = worktrees.enter_context(_worktree(rev, work / "old", "old"))
            if options.new is None:
                new = _this_tree()
            else:
                new = worktrees.enter_context(_worktree(options.new, work / "new", "new"))
            trees = [old, new]
            for tree in trees:
                print(f"{tree.label}: {tree.description}")
            for note in result.notes:
                print(f"note: {note}")
            for tree in trees:
                _prepare(tree)
            data = _write_data(work, sizes)

            demo_rows = demo_end_to_end(trees, data, sizes, loops, work)
            result.rows.extend(demo_rows)
            _print_section(
                f"1. the demo job end to end via the CLI: {sizes.events:,} events, "
                f"{sizes.users:,} users, best of {sizes.reps}, trees alternating "
                f"(target: new >= {DEMO_TARGET:g}x old events/s)",
                DEMO_COLUMNS,
                demo_rows,
            )

            element_rows = per_element(trees, data, sizes, work, callgrind=callgrind)
            result.rows.extend(element_rows)
            title = (
                f"2. instructions per element (callgrind, {CALLGRIND_LOOP} loop): the "
                "difference between the two sizes, so start-up cancels out "
                f"(target: new/old <= {MAX_RATIO:g})"
                if callgrind
                else "2. wall-clock µs per element of the larger run (no callgrind: a smoke "
                "run, not the instruction counts)"
            )
            _print_section(title, _instruction_columns(callgrind), element_rows)
    result.seconds = time.perf_counter() - started
    return result
