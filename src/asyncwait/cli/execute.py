"""Running a built job for the command line: display, signals, summary, exit status (private).

``run`` and ``demo`` share :func:`execute_job`: build the job, run it on the chosen loop
with a live display and stop-on-signal (and a Prometheus endpoint when asked), then print
the summary and return the exit status. The library's log records are printed by
:mod:`.logs` (``--log-format``, ``--log-level``); with JSON logs there is no live display
and the summary is one ``job_summary`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .. import jobfile
from .._locks import Locks, lock_outputs
from .._paths import Access, PathUse, check_no_alias
from .._tasks import TaskOwner
from ..errors import AsyncWaitError, ConfigError
from .logs import json_logs, name_job, say

if TYPE_CHECKING:
    from rich.console import Console

    from ..prometheus import MetricsEndpoint
    from ..runtime import StreamEnvironment
    from .progress import Display
    from .report import RunRecorder
    from .views import ProgressView

__all__ = (
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PIPE_CLOSED",
    "EXIT_USAGE",
    "error",
    "execute_job",
)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
_EXIT_INTERRUPTED: Final = 130
EXIT_PIPE_CLOSED: Final = 128 + signal.SIGPIPE  # 141, as a filter killed by SIGPIPE
_POLL_INTERVAL: Final = 0.25  # seconds between two progress snapshots


def error(message: str, *, debug: bool = False) -> None:
    """Print ``error: message`` on stderr (with the traceback under ``--debug``).

    With ``--log-format json`` it is a JSON line (``"event": "error"``).
    """
    if debug:
        traceback.print_exc(file=sys.stderr)
    say("error", message, event="error")


def execute_job(
    spec: jobfile.JobSpec,
    console: Console,
    *,
    quiet: bool,
    debug: bool,
    json_summary: Path | None,
    fresh: bool = False,
    wrap_lookup: Callable[[Any], Any] | None = None,
    loop: str = "auto",
    metrics: MetricsEndpoint | None = None,
    report: Path | None = None,
) -> int:
    """Build and run ``spec``: the one code path of both ``run`` and ``demo``.

    The ``--json-summary`` and ``--report`` files are locked for the whole run, like the
    job's own outputs (which the job locks), so two runs never write one of them.
    ``metrics`` (already listening, so a port in use was refused before) serves the
    job's metrics while it runs and is closed at the end, whatever happens.
    """
    summary_lock = Locks([])
    name_job(spec.name)
    try:
        uses = [PathUse("--json-summary", json_summary, Access.WRITE)] if json_summary else []
        if report is not None:
            uses.append(PathUse("--report", report, Access.WRITE))
        if uses:
            summary_lock = lock_outputs(check_no_alias(uses, owner=""), owner=str(spec.file))
        with summary_lock:
            return _execute_job(
                spec,
                console,
                quiet=quiet,
                debug=debug,
                json_summary=json_summary,
                fresh=fresh,
                wrap_lookup=wrap_lookup,
                loop=loop,
                metrics=metrics,
                report=report,
            )
    finally:
        if metrics is not None:
            metrics.close()  # a socket that never served (the job could not start)


def _execute_job(
    spec: jobfile.JobSpec,
    console: Console,
    *,
    quiet: bool,
    debug: bool,
    json_summary: Path | None,
    fresh: bool,
    wrap_lookup: Callable[[Any], Any] | None,
    loop: str,
    metrics: MetricsEndpoint | None,
    report: Path | None,
) -> int:
    from .progress import LineDisplay, LiveDisplay, NullDisplay
    from .report import RunRecorder
    from .summary import print_summary, summarize, write_json_summary
    from .views import ProgressView

    try:
        env = jobfile.build(spec, fresh=fresh, wrap_lookup=wrap_lookup)
    except ConfigError:
        raise  # already names the file and field
    except Exception as exc:  # e.g. a value the runtime rejects: still no bare traceback
        error(_failure_message(spec, exc), debug=debug)
        return EXIT_FAILED
    if metrics is not None:
        from ..prometheus import PrometheusCollector

        metrics.registry.register(PrometheusCollector(env))
    display: Display
    if quiet or json_logs():
        display = NullDisplay()
    elif console.is_terminal:
        display = LiveDisplay(console, spec.name)
    else:
        display = LineDisplay(sys.stderr)
    errors_path = spec.errors.path if spec.errors else None
    recorder = RunRecorder() if report is not None else None
    failure: BaseException | None = None
    try:
        # A streaming job allocates many short-lived objects and keeps few: full
        # collections at the default thresholds cost ~8% of the demo. The CLI owns the
        # process, so it may make them rarer.
        gc.set_threshold(50_000, 20, 100)
        _keep_freed_memory()
        result = _run_loop(_drive(env, display, metrics, recorder), loop)
    except KeyboardInterrupt:
        display.close()
        error(f"job {spec.name!r} interrupted")
        return _EXIT_INTERRUPTED
    except ConfigError as exc:  # found when the job opened: a table, a column, a driver
        display.close()
        if str(exc).startswith(f"{spec.file}: "):
            raise
        msg = f"{spec.file}: {exc}"
        raise ConfigError(msg) from exc
    except BrokenPipeError as exc:
        display.close()
        if spec.sink.path is not None:
            failure = exc  # a file, not stdout: a real failure
        else:
            return _reader_gone(debug=debug, exc=exc)
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
            totals=getattr(result, "totals", None),
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
            totals=env.progress().totals,
        )
    if json_summary is not None:
        try:
            write_json_summary(summary, json_summary)
        except OSError as exc:
            error(f"cannot write the JSON summary to {json_summary}: {exc}")
            return EXIT_FAILED
    if report is not None and recorder is not None:
        final = env.progress() if failure is not None else result
        samples = () if failure is not None else getattr(result, "error_samples", ())
        if not _write_report(report, recorder, summary, final, errors_path, samples):
            return EXIT_FAILED
    if json_logs():
        if not quiet:
            level = "error" if failure is not None else "info"
            status = f"job {spec.name!r} {summary['status']}"
            say(level, status, event="job_summary", fields=summary)
    elif not quiet:
        print_summary(summary, console)
    if failure is not None:
        if debug:
            traceback.print_exception(failure, file=sys.stderr)
        say("error", summary["error"], event="error")
        return EXIT_FAILED
    if result.stopped:
        if checkpoints is None:
            error(f"job {spec.name!r} stopped before its end (no checkpoints to resume from)")
            return _EXIT_INTERRUPTED
        message = (
            f"job {spec.name!r} committed everything up to checkpoint "
            f"#{checkpoints['last']}; run it again to resume from there"
        )
        if json_logs():
            say("info", message, event="stopped")
        else:
            print(f"stopped: {message}", file=sys.stderr, flush=True)
    return EXIT_OK


def _write_report(
    path: Path,
    recorder: RunRecorder,
    summary: dict[str, Any],
    final: Any,
    errors_path: Path | None,
    error_samples: Any,
) -> bool:
    """Write the ``--report`` page; False (and an error line) when it cannot be written."""
    from .report import count_reasons, render_report, write_report

    recorder.finish(final)
    reasons, note = count_reasons(errors_path, error_samples)
    page = render_report(summary, recorder.samples, final, reasons, note)
    try:
        write_report(path, page)
    except OSError as exc:
        error(f"--report: cannot write the run report to {path}: {exc.strerror or exc}")
        return False
    return True


def _reader_gone(*, debug: bool, exc: BaseException) -> int:
    """Standard output was closed by its reader (``... | head``): end quietly, as filters do.

    No summary and no error: the reader asked for no more. Standard output is pointed at
    the null device so that Python's own flush at exit does not fail on it again.
    """
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError):
        pass  # no real stdout to redirect: nothing will flush into a closed pipe either
    return EXIT_PIPE_CLOSED


def _keep_freed_memory() -> None:
    """Make glibc keep freed heap memory for the next batch instead of returning it.

    Each batch of output lines is a thousand small buffers that glibc allocates at the top
    of the heap and trims away when the batch is freed; growing the heap back page by page
    cost ~1 s of system time per 300,000 events (page faults). Keeping up to 32 MiB free at
    the top, and growing it 8 MiB at a time, removes that; the peak stays bounded. Other C
    libraries: nothing to do.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_top_pad = -1, -2  # <malloc.h>
    mallopt(m_trim_threshold, 32 << 20)
    mallopt(m_top_pad, 8 << 20)


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


async def _drive(
    env: StreamEnvironment,
    display: Display,
    metrics: MetricsEndpoint | None,
    recorder: RunRecorder | None,
) -> Any:
    """Run the job, feeding ``display`` a progress snapshot every ``_POLL_INTERVAL`` s.

    ``metrics`` serves ``/metrics`` on this loop from before the job starts until it ended;
    ``recorder`` keeps the same snapshots for the ``--report`` page.
    """
    async with contextlib.AsyncExitStack() as stack:
        if metrics is not None:
            await stack.enter_async_context(metrics)
        return await _watch(env, display, recorder)


async def _watch(env: StreamEnvironment, display: Display, recorder: RunRecorder | None) -> Any:
    from .views import ProgressView

    view: Callable[[Any], ProgressView] = ProgressView.of
    owner = TaskOwner(f"run {env.name}")
    job = owner.spawn(env.execute_async(), "job")
    handled = _stop_on_signals(env)
    try:
        while True:
            done, _ = await asyncio.wait({job}, timeout=_POLL_INTERVAL)
            if done:
                return job.result()
            progress = env.progress()
            display.update(view(progress))
            if recorder is not None:
                recorder.sample(progress)
    finally:
        loop = asyncio.get_running_loop()
        for signum in handled:
            loop.remove_signal_handler(signum)
        await owner.aclose()


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
