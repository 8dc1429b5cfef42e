"""The ``asyncwait`` command: run, validate and demo job files.

::

    asyncwait run JOB.toml [--fresh] [--quiet] [--json-summary FILE] [--max-errors N]
    asyncwait validate JOB.toml
    asyncwait demo [--events N] [--users M] [--dir DIR] [--mode MODE] [--capacity C]
                   [--latency-ms MS] [--no-cache] [--quiet] [--json-summary FILE] [--seed S]

Exit status: 0 success, 1 the job failed, 2 a bad command line or job file. Errors are one
line on stderr (``error: ...``) naming the file, field, operator or element; ``--debug``
adds the traceback. Progress and the final summary go to stderr, so a ``stdout`` sink stays
clean. ``run`` and ``demo`` need rich (``pip install 'asyncwait[cli]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from . import jobfile
from .errors import AsyncWaitError, ConfigError
from .operator import OutputMode

if TYPE_CHECKING:
    from rich.console import Console

    from .progress import Display, ProgressView
    from .runtime import StreamEnvironment

__all__ = ("main",)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
_EXIT_INTERRUPTED: Final = 130
_POLL_INTERVAL: Final = 0.25  # seconds between two progress snapshots
_INSTALL_HINT: Final = "pip install 'asyncwait[cli]'"


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        msg = f"must be >= 1, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        msg = f"not an integer: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 0:
        msg = f"must be >= 0, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"not a number: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not value >= 0 or value == float("inf"):
        msg = f"must be a finite number >= 0, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop when installed (auto, the default), or asyncio's own",
    )
    output.add_argument("--quiet", "-q", action="store_true", help="no progress, no summary")
    output.add_argument(
        "--json-summary", metavar="FILE", type=Path, help="also write the summary as JSON"
    )

    parser = argparse.ArgumentParser(
        prog="asyncwait",
        description="Run asyncwait dataflow jobs described by TOML job files.",
        epilog="Exit status: 0 success, 1 the job failed, 2 bad command line or job file.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", parents=[common, output], help="run a job file", description="Run a job file."
    )
    run.add_argument("job", metavar="JOB.toml", type=Path, help="the job file")
    run.add_argument(
        "--fresh", action="store_true", help="ignore existing checkpoints and start over"
    )
    run.add_argument(
        "--max-errors",
        metavar="N",
        type=_non_negative_int,
        help="fail after more than N bad input elements (overrides [errors] max_errors)",
    )

    validate = commands.add_parser(
        "validate",
        parents=[common],
        help="check a job file and describe its pipeline",
        description="Check a job file without running it and describe its pipeline.",
    )
    validate.add_argument("job", metavar="JOB.toml", type=Path, help="the job file")

    demo = commands.add_parser(
        "demo",
        parents=[common, output],
        help="generate browse events and a dim_user table, then enrich the events",
        description=(
            "Generate browse events (JSONL) and a dim_user SQLite table, write a job file "
            "joining them into DIR and run it exactly like `asyncwait run`."
        ),
    )
    demo.add_argument("--events", metavar="N", type=_positive_int, default=100_000)
    demo.add_argument("--users", metavar="M", type=_positive_int, default=10_000)
    demo.add_argument("--dir", metavar="DIR", type=Path, default=Path("demo-output"))
    demo.add_argument(
        "--mode", choices=[m.value for m in OutputMode], default=OutputMode.UNORDERED.value
    )
    demo.add_argument("--capacity", metavar="C", type=_positive_int, default=100)
    demo.add_argument(
        "--latency-ms",
        metavar="MS",
        type=_non_negative_float,
        default=0.0,
        help="simulated extra latency of every lookup that reaches the table (default 0)",
    )
    demo.add_argument("--no-cache", action="store_true", help="look every event up")
    demo.add_argument("--seed", metavar="S", type=int, help="seed for reproducible data")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``asyncwait`` command line and return its exit status.

    Args:
        argv: the arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        0 on success, 1 when the job failed, 2 for a bad command line or job file.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if args.command == "validate":
            return _validate(args)
        try:
            from rich.console import Console
        except ImportError:
            _error(f"`asyncwait {args.command}` needs rich: {_INSTALL_HINT}")
            return EXIT_FAILED
        console = Console(stderr=True)
        if args.command == "run":
            return _run(args, console)
        return _demo(args, console)
    except ConfigError as exc:
        _error(str(exc), debug=args.debug)
        return EXIT_USAGE


def _error(message: str, *, debug: bool = False) -> None:
    if debug:
        traceback.print_exc(file=sys.stderr)
    print(f"error: {message}", file=sys.stderr, flush=True)


def _validate(args: argparse.Namespace) -> int:
    spec = jobfile.load(args.job)
    print(jobfile.describe(spec))
    for note in jobfile.unavailable(spec):
        print(f"note: {note}")
    print(f"{args.job}: ok")
    return EXIT_OK


def _run(args: argparse.Namespace, console: Console) -> int:
    spec = jobfile.load(args.job)
    if args.max_errors is not None:
        spec = spec.with_max_errors(args.max_errors)
    return _execute_job(
        spec,
        console,
        quiet=args.quiet,
        debug=args.debug,
        json_summary=args.json_summary,
        fresh=args.fresh,
        loop=args.loop,
    )


def _demo(args: argparse.Namespace, console: Console) -> int:
    from . import demo

    started = time.perf_counter()
    try:
        data = demo.generate(args.dir, events=args.events, users=args.users, seed=args.seed)
        job_path = demo.write_job(
            data, mode=OutputMode(args.mode), capacity=args.capacity, cache=not args.no_cache
        )
    except (OSError, sqlite3.Error) as exc:
        _error(f"cannot write the demo data into {args.dir}: {exc}", debug=args.debug)
        return EXIT_FAILED
    if not args.quiet:
        console.print(
            f"generated {data.events:,} events ({data.malformed:,} malformed) and dim_user "
            f"({data.rows:,} of {data.users:,} users) in {time.perf_counter() - started:.1f} s; "
            f"job file {job_path}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    spec = jobfile.load(job_path)
    wrap = demo.slowed(args.latency_ms / 1000) if args.latency_ms else None
    code = _execute_job(
        spec,
        console,
        quiet=args.quiet,
        debug=args.debug,
        json_summary=args.json_summary,
        wrap_lookup=wrap,
        loop=args.loop,
    )
    if code == EXIT_OK and not args.quiet:
        console.print(
            f"enriched events: {spec.sink.path}", markup=False, highlight=False, soft_wrap=True
        )
    return code


def _execute_job(
    spec: jobfile.JobSpec,
    console: Console,
    *,
    quiet: bool,
    debug: bool,
    json_summary: Path | None,
    fresh: bool = False,
    wrap_lookup: Callable[[Any], Any] | None = None,
    loop: str = "auto",
) -> int:
    """Build and run ``spec``: the one code path of both ``run`` and ``demo``."""
    from .progress import (
        LineDisplay,
        LiveDisplay,
        NullDisplay,
        ProgressView,
        print_summary,
        summarize,
        write_json_summary,
    )

    try:
        env = jobfile.build(spec, fresh=fresh, wrap_lookup=wrap_lookup)
    except ConfigError:
        raise  # already names the file and field
    except Exception as exc:  # e.g. a value the runtime rejects: still no bare traceback
        _error(_failure_message(spec, exc), debug=debug)
        return EXIT_FAILED
    display: Display
    if quiet:
        display = NullDisplay()
    elif console.is_terminal:
        display = LiveDisplay(console, spec.name)
    else:
        display = LineDisplay(sys.stderr)
    errors_path = spec.errors.path if spec.errors else None
    failure: BaseException | None = None
    try:
        # A streaming job allocates many short-lived objects and keeps few: full
        # collections at the default thresholds cost ~8% of the demo. The CLI owns the
        # process, so it may make them rarer.
        gc.set_threshold(50_000, 20, 100)
        result = _run_loop(_drive(env, display), loop)
    except KeyboardInterrupt:
        display.close()
        _error(f"job {spec.name!r} interrupted")
        return _EXIT_INTERRUPTED
    except ConfigError as exc:  # found when the job opened: a table, a column, a driver
        display.close()
        if str(exc).startswith(f"{spec.file}: "):
            raise
        msg = f"{spec.file}: {exc}"
        raise ConfigError(msg) from exc
    except Exception as exc:  # the job failed: report it, never a bare traceback
        failure = exc
    finally:
        display.close()

    checkpoints = _checkpoint_summary(env, None if failure is not None else result)
    if failure is None:
        view = ProgressView.of(result)
        samples = getattr(result, "error_samples", ())
        summary = summarize(
            view,
            job=spec.name,
            status="stopped" if result.stopped else "succeeded",
            errors_path=errors_path,
            error_samples=samples,
            checkpoints=checkpoints,
        )
    else:
        view = ProgressView.of(env.progress())
        message = _failure_message(spec, failure)
        summary = summarize(
            view,
            job=spec.name,
            status="failed",
            errors_path=errors_path,
            error=message,
            checkpoints=checkpoints,
        )
    if json_summary is not None:
        try:
            write_json_summary(summary, json_summary)
        except OSError as exc:
            _error(f"cannot write the JSON summary to {json_summary}: {exc}")
            return EXIT_FAILED
    if not quiet:
        print_summary(summary, console)
    if failure is not None:
        if debug:
            traceback.print_exception(failure, file=sys.stderr)
        print(f"error: {summary['error']}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    if result.stopped:
        if checkpoints is None:
            _error(f"job {spec.name!r} stopped before its end (no checkpoints to resume from)")
            return _EXIT_INTERRUPTED
        print(
            f"stopped: job {spec.name!r} committed everything up to checkpoint "
            f"#{checkpoints['last']}; run it again to resume from there",
            file=sys.stderr,
            flush=True,
        )
    return EXIT_OK


def _checkpoint_summary(env: StreamEnvironment, result: Any) -> dict[str, Any] | None:
    """The checkpoint part of the summary, or None when the job does not checkpoint."""
    if env.checkpoint_dir is None:
        return None
    progress = env.progress() if result is None else result
    return {
        "dir": str(env.checkpoint_dir),
        "restored_from": getattr(result, "restored_from", None),
        "completed": progress.checkpoints,
        "last": progress.last_checkpoint,
    }


def _failure_message(spec: jobfile.JobSpec, exc: BaseException) -> str:
    """One line saying why the job failed, with the cause chain's first useful link."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_failure_message(spec, e) for e in exc.exceptions)
    job = f"job {spec.name!r}"
    text = (str(exc) or type(exc).__name__).removeprefix(f"{job}: ")
    if not isinstance(exc, AsyncWaitError | OSError) or not str(exc):
        text = f"{type(exc).__name__}: {text}"
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return text if text.startswith(job) else f"{job} failed: {text}"


def _run_loop(main: Coroutine[Any, Any, Any], loop: str) -> Any:
    """Run ``main`` on the chosen event loop; ``auto`` takes uvloop when it is installed.

    uvloop runs the same job about 1.5-2x faster (its loop is C, asyncio's is Python).
    """
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                main.close()
                msg = "--loop uvloop: uvloop is not installed (pip install 'asyncwait[uvloop]')"
                raise ConfigError(msg) from None
        else:
            return uvloop.run(main)
    return asyncio.run(main)


async def _drive(env: StreamEnvironment, display: Display) -> Any:
    """Run the job, feeding ``display`` a progress snapshot every ``_POLL_INTERVAL`` s."""
    from .progress import ProgressView

    view: Callable[[Any], ProgressView] = ProgressView.of
    job = asyncio.ensure_future(env.execute_async())
    handled = _stop_on_signals(env)
    try:
        while True:
            done, _ = await asyncio.wait({job}, timeout=_POLL_INTERVAL)
            if done:
                return job.result()
            display.update(view(env.progress()))
    finally:
        loop = asyncio.get_running_loop()
        for signum in handled:
            loop.remove_signal_handler(signum)
        if not job.done():
            job.cancel()
            await asyncio.wait({job})


def _stop_on_signals(env: StreamEnvironment) -> list[int]:
    """SIGINT/SIGTERM: the first stops the job (after a checkpoint); the second exits now.

    Exiting at once loses nothing that a checkpoint committed: the next run resumes from
    the latest complete one, as after a crash.
    """
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) > 1:
            name = signal.Signals(signum).name
            print(f"\n{name}: a second signal, exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        how = "taking a checkpoint, then " if env.checkpoint_dir is not None else ""
        print(
            f"\n{signal.Signals(signum).name}: {how}stopping (signal again to exit at once)",
            file=sys.stderr,
            flush=True,
        )
        env.stop()

    handled: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or a platform without it: Ctrl-C still interrupts
        handled.append(signum)
    return handled
