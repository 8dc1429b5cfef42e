"""The ``asyncwait`` command: run, validate and demo job files.

::

    asyncwait run JOB.toml [--fresh] [--quiet] [--json-summary FILE] [--report FILE]
                  [--max-errors N]
                  [--metrics-port N [--metrics-host HOST]] [--log-format human|json]
                  [--log-level LEVEL]
    asyncwait validate JOB.toml [--json-summary FILE]
    asyncwait demo [--events N] [--users M] [--dir DIR] [--mode MODE] [--capacity C]
                   [--latency-ms MS] [--no-cache] [--quiet] [--json-summary FILE]
                   [--report FILE] [--seed S]

Exit status: 0 success, 1 the job failed, 2 a bad command line or job file. Errors are one
line on stderr (``error: ...``) naming the file, field, operator or element; ``--debug``
adds the traceback. Warnings (e.g. a damaged checkpoint skipped) are one line too
(``warning: ...``), never Python's warning format. Progress and the final summary go to
stderr, so a ``stdout`` sink stays clean. ``run`` and ``demo`` need rich
(``pip install 'asyncwait[cli]'``).
"""

from __future__ import annotations

import argparse
import sqlite3
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from .. import jobfile
from .._paths import Access, PathUse, check_outputs
from ..errors import CheckpointWarning, ConfigError
from ..operator import OutputMode
from .execute import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error, execute_job
from .logs import LEVELS, LogFormat, json_logs, library_logs, say
from .report import check_report

if TYPE_CHECKING:
    from rich.console import Console

    from ..prometheus import MetricsEndpoint

__all__ = ("main",)

_INSTALL_HINT: Final = "pip install 'asyncwait[cli]'"


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``minimum`` (``_`` allowed as a digit separator)."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            value = None
        if value is None or value < minimum:
            msg = f"must be an integer >= {minimum}, got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _port(text: str) -> int:
    value = _int_at_least(1)(text)
    if value > 65535:
        msg = f"must be a TCP port in 1..65535, got {text!r}"
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
    from .. import __version__

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
    output.add_argument(
        "--report",
        metavar="FILE",
        type=Path,
        help="write a self-contained HTML run report (charts of throughput, latency, "
        "in-flight, cache hits, errors) to FILE at the end",
    )
    output.add_argument(
        "--metrics-port",
        metavar="N",
        type=_port,
        help="serve Prometheus metrics at http://HOST:N/metrics while the job runs "
        "(overrides [metrics] port; needs asyncwait[metrics])",
    )
    output.add_argument(
        "--metrics-host",
        metavar="HOST",
        help="the address the metrics endpoint listens on (default: [metrics] host, "
        "else 127.0.0.1)",
    )
    output.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        default=LogFormat.HUMAN.value,
        help="log lines on stderr: human (default) or json (one object per line; no live "
        "display, the summary as a line)",
    )
    output.add_argument(
        "--log-level",
        choices=LEVELS,
        type=str.lower,
        help="the least severe log lines shown (default: warning; info with --log-format json)",
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
    validate.add_argument(
        "--json-summary",
        metavar="FILE",
        type=Path,
        help="also check that `run --json-summary FILE` could write FILE",
    )

    demo = commands.add_parser(
        "demo",
        parents=[common, output],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="generate browse events and a dim_user table, then enrich the events",
        description=(
            "Generate browse events (JSONL) and a dim_user SQLite table, write a job file "
            "joining them into DIR and run it exactly like `asyncwait run`."
        ),
    )
    demo.add_argument(
        "--events", metavar="N", type=_positive_int, default=100_000, help="events to generate"
    )
    demo.add_argument(
        "--users",
        metavar="M",
        type=_positive_int,
        default=10_000,
        help="users the events come from; dim_user holds 49 in 50 of them",
    )
    demo.add_argument(
        "--dir",
        metavar="DIR",
        type=Path,
        default=Path("demo-output"),
        help="where the data, the job file and the output go (files the demo wrote before "
        "are replaced; nothing else is touched)",
    )
    demo.add_argument(
        "--mode",
        choices=[m.value for m in OutputMode],
        default=OutputMode.UNORDERED.value,
        help="the lookup join's output order",
    )
    demo.add_argument(
        "--capacity", metavar="C", type=_positive_int, default=100, help="lookups in flight"
    )
    demo.add_argument(
        "--latency-ms",
        metavar="MS",
        type=_non_negative_float,
        default=0.0,
        help="simulated extra latency of every lookup that reaches the table",
    )
    demo.add_argument("--no-cache", action="store_true", help="look every event up (no LRU cache)")
    demo.add_argument(
        "--seed",
        metavar="S",
        type=int,
        default=None,
        help="seed for reproducible data (default: %(default)s, new data each run)",
    )
    return parser


def _progress_lines(console: Console) -> Callable[[str, int, int], None]:
    """A demo progress callback printing a line at most every second (when it takes that)."""
    shown = time.perf_counter()

    def show(what: str, done: int, total: int) -> None:
        nonlocal shown
        now = time.perf_counter()
        if now - shown >= 1.0:
            shown = now
            console.print(f"writing {what}: {done:,} of {total:,}", markup=False, highlight=False)

    return show


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
    fmt = LogFormat(getattr(args, "log_format", LogFormat.HUMAN.value))
    level = getattr(args, "log_level", None) or ("info" if fmt is LogFormat.JSON else "warning")
    with warnings.catch_warnings(), library_logs(fmt, level):
        warnings.showwarning = _warning_line
        warnings.simplefilter("always", CheckpointWarning)  # each one says what was skipped
        return _command(args)


def _warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Show a warning as one line, ``warning: ...``, without Python's source line."""
    text = " ".join(str(message).split())
    if file is None:
        say("warning", text, event=category.__name__)
    else:
        print(f"warning: {text}", file=file, flush=True)


def _command(args: argparse.Namespace) -> int:
    try:
        if args.command == "validate":
            return _validate(args)
        try:
            from rich.console import Console
        except ImportError:
            error(f"`asyncwait {args.command}` needs rich: {_INSTALL_HINT}")
            return EXIT_FAILED
        console = Console(stderr=True)
        if args.command == "run":
            return _run(args, console)
        return _demo(args, console)
    except ConfigError as exc:
        error(str(exc), debug=args.debug)
        return EXIT_USAGE


def _validate(args: argparse.Namespace) -> int:
    spec = jobfile.load(args.job)
    jobfile.check(spec, json_summary=args.json_summary)
    print(jobfile.describe(spec))
    for note in jobfile.unavailable(spec):
        print(f"note: {note}")
    print(f"{args.job}: ok")
    return EXIT_OK


def _run(args: argparse.Namespace, console: Console) -> int:
    spec = jobfile.load(args.job)
    if args.max_errors is not None:
        spec = spec.with_max_errors(args.max_errors)
    jobfile.check(spec, json_summary=args.json_summary)  # the checks of `validate`
    if args.report is not None:
        check_report(args.report, spec, json_summary=args.json_summary)
    return execute_job(
        spec,
        console,
        quiet=args.quiet,
        debug=args.debug,
        json_summary=args.json_summary,
        fresh=args.fresh,
        loop=args.loop,
        metrics=_metrics_endpoint(args, spec.metrics, spec.file),
        report=args.report,
    )


def _metrics_endpoint(
    args: argparse.Namespace, configured: jobfile.MetricsSpec | None, file: Path | None
) -> MetricsEndpoint | None:
    """Listen for Prometheus now, before the job starts, or refuse (naming the option).

    ``--metrics-port``/``--metrics-host`` override ``[metrics]`` of the job file.

    Raises:
        ConfigError: the port is in use or not permitted, the host unknown, or
            prometheus_client is not installed.
    """
    port: int | None = args.metrics_port
    where = "--metrics-port"
    if port is None and configured is not None:
        port, where = configured.port, f"{file}: metrics.port"
    if port is None:
        if args.metrics_host is not None:
            msg = "--metrics-host: needs --metrics-port (or [metrics] port in the job file)"
            raise ConfigError(msg)
        return None
    host = args.metrics_host
    if host is not None:
        where = f"{where} {port} --metrics-host"
    else:
        host = configured.host if configured is not None else "127.0.0.1"
    from ..prometheus import MetricsEndpoint, metrics_registry

    try:
        return MetricsEndpoint(metrics_registry(), host=host, port=port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        msg = f"{where}: cannot serve metrics on {host}:{port}: {reason}"
        raise ConfigError(msg) from exc


def _demo(args: argparse.Namespace, console: Console) -> int:

    wanted = {"--json-summary": args.json_summary, "--report": args.report}
    outputs = [PathUse(opt, path, Access.WRITE) for opt, path in wanted.items() if path]
    check_outputs(outputs, owner="")  # before the data is generated, not after
    metrics = _metrics_endpoint(args, None, None)  # a port in use: refused before, too
    try:
        return _demo_run(args, console, metrics)
    finally:
        if metrics is not None:
            metrics.close()


def _demo_run(args: argparse.Namespace, console: Console, metrics: MetricsEndpoint | None) -> int:
    from . import demo

    started = time.perf_counter()
    try:
        data = demo.generate(
            args.dir,
            events=args.events,
            users=args.users,
            seed=args.seed,
            progress=None if args.quiet or json_logs() else _progress_lines(console),
        )
        job_path = demo.write_job(
            data, mode=OutputMode(args.mode), capacity=args.capacity, cache=not args.no_cache
        )
    except (OSError, sqlite3.Error) as exc:
        error(f"cannot write the demo data into {args.dir}: {exc}", debug=args.debug)
        return EXIT_FAILED
    if not args.quiet:
        _note(
            console,
            f"generated {data.events:,} events ({data.malformed:,} malformed) and dim_user "
            f"({data.rows:,} of {data.users:,} users) in {time.perf_counter() - started:.1f} s; "
            f"job file {job_path}",
            "demo_data",
        )
    spec = jobfile.load(job_path)
    jobfile.check(spec, json_summary=args.json_summary)
    if args.report is not None:
        check_report(args.report, spec, json_summary=args.json_summary)
    assert metrics is None or spec.metrics is None  # the demo's job file has no [metrics]
    wrap = demo.slowed(args.latency_ms / 1000) if args.latency_ms else None
    code = execute_job(
        spec,
        console,
        quiet=args.quiet,
        debug=args.debug,
        json_summary=args.json_summary,
        wrap_lookup=wrap,
        loop=args.loop,
        metrics=metrics,
        report=args.report,
    )
    if code == EXIT_OK and not args.quiet:
        _note(console, f"enriched events: {spec.sink.path}", "demo_output")
    return code


def _note(console: Console, message: str, event: str) -> None:
    """A line about what the command did: plain text, or a JSON line with JSON logs."""
    if json_logs():
        say("info", message, event=event)
    else:
        console.print(message, markup=False, highlight=False, soft_wrap=True)
