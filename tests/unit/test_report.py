"""``--report``: the run report page, its samples, its checks before a job starts."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncwait.cli import main
from asyncwait.cli.report import RunRecorder, count_reasons, render_report, write_report
from asyncwait.cli.summary import summarize
from asyncwait.cli.views import ProgressView
from asyncwait.errors import ConfigError
from asyncwait.metrics import Histogram
from asyncwait.runtime import OperatorSummary

from .test_jobfile import make_data, write_job

VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "source", "wbr"}
SVG_LEAVES = {"rect", "line", "polyline", "circle", "path"}  # may be self-closed


class Page(HTMLParser):
    """Checks that every element is closed in order; collects each chart's SVG elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problems: list[str] = []
        self.charts: list[tuple[str, list[tuple[str, dict[str, str | None]]]]] = []
        self.tags: list[str] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [f"{k}={v}" for k, v in attrs]
        found = dict(attrs)
        if tag == "section" and "data-chart" in found:
            self.charts.append((str(found["data-chart"]), []))
        elif self.charts and "section" in self.open:
            self.charts[-1][1].append((tag, found))
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID and tag not in SVG_LEAVES:
            self.problems.append(f"<{tag}/> is not an element that may close itself")
        self.tags.append(tag)
        self.attributes += [f"{k}={v}" for k, v in attrs]
        if self.charts and "section" in self.open:
            self.charts[-1][1].append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:]}")
            return
        self.open.pop()


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    assert parser.problems == []
    assert parser.open == []
    return parser


def latency(*seconds: float) -> Any:
    histogram = Histogram()
    for s in seconds:
        histogram.observe(s)
    return histogram.snapshot()


def operator(in_flight: int, hits: int, misses: int, **more: Any) -> OperatorSummary:
    counters = {"cache_hits": hits, "cache_misses": misses, **more.pop("counters", {})}
    return OperatorSummary(
        name="lookup[0]:dim_user",
        in_flight=in_flight,
        queued=in_flight,
        capacity=8,
        emitted=hits + misses,
        retries=0,
        timeouts=0,
        failures=0,
        counters=counters,
        **more,
    )


def progress(t: float, n: int, *, limit: int | None = None) -> Any:
    counters = {} if limit is None else {"concurrency_limit": limit}
    op = operator(min(n, 8), n // 2, n - n // 2, counters=counters)
    return NS(elapsed=t, events_in=n, events_out=n, errors=0, operators=(op,))


def a_page(recorder: RunRecorder, reasons: dict[str, int]) -> str:
    final_op = operator(0, 50, 50, latency=latency(0.001, 0.002, 0.002, 0.5))
    final = NS(duration=10.0, events_in=100, events_out=100, errors=0, operators=(final_op,))
    recorder.finish(final)
    summary = summarize(ProgressView.of(final), job="enrich <&>")
    return render_report(summary, recorder.samples, final, Counter(reasons), "counted here")


def test_the_page_is_well_formed_and_has_one_drawn_chart_each() -> None:
    recorder = RunRecorder()
    for t in range(1, 10):
        recorder.sample(progress(float(t), t * 10, limit=4 + t % 3))
    page = a_page(recorder, {"bad_input: invalid JSON": 3, "lookup_failed: timeout": 1})
    parsed = parse(page)
    charts = dict(parsed.charts)
    assert sorted(charts) == ["cache", "errors", "in-flight", "latency", "throughput"]
    assert [name for name, _ in parsed.charts].count("latency") == 1
    for name, elements in parsed.charts:
        assert [tag for tag, _ in elements].count("svg") == 1, name
        lines = [a for tag, a in elements if tag == "polyline"]
        bars = [a for tag, a in elements if tag == "rect" and a.get("class") == "bar"]
        if name in ("latency", "errors"):
            assert bars, name
        else:
            assert lines, name
            assert all(len(str(a["points"]).split()) >= 2 for a in lines), name
    series = {a["data-series"] for tag, a in charts["in-flight"] if tag == "polyline"}
    assert series == {"in flight", "capacity", "concurrency limit"}
    errors = [a for tag, a in charts["errors"] if tag == "rect" and a.get("class") == "bar"]
    assert len(errors) == 2
    # Self-contained: nothing to fetch, nothing to run.
    assert not re.search(r"https?://", page)
    assert not {"script", "link", "img", "iframe", "object"} & set(parsed.tags)
    assert not [a for a in parsed.attributes if a.startswith(("src=", "href="))]
    assert "enrich &lt;&amp;&gt;" in page  # text is escaped


def test_a_job_without_cache_or_samples_still_renders() -> None:
    final = NS(duration=0.0, events_in=0, events_out=0, errors=0, operators=())
    recorder = RunRecorder()
    recorder.finish(final)
    summary = summarize(ProgressView.of(final), job="empty", status="failed", error="boom")
    page = render_report(summary, recorder.samples, final, Counter(), "no errors file")
    parsed = parse(page)
    assert [name for name, _ in parsed.charts] == ["throughput"]
    assert "boom" in page
    assert "no errors" in page


@given(polls=st.integers(min_value=0, max_value=5000), limit=st.integers(2, 50))
def test_samples_stay_bounded_and_evenly_spaced(polls: int, limit: int) -> None:
    recorder = RunRecorder(limit=limit)
    for t in range(polls):
        recorder.sample(NS(elapsed=float(t + 1), events_in=t, events_out=t, errors=0))
    recorder.finish(NS(duration=polls + 1.5, events_in=polls, events_out=polls, errors=0))
    kept = [s.elapsed for s in recorder.samples]
    assert len(kept) <= limit + 2  # the start, the kept polls, the end
    assert kept[0] == 0.0
    assert kept[-1] == polls + 1.5
    assert kept == sorted(kept)
    polled = kept[1:-1]
    if polls:
        assert polled[0] == 1.0  # the first poll is always kept
        steps = {b - a for a, b in itertools.pairwise(polled)}
        assert len(steps) <= 1  # one stride
        assert len(polled) > limit // 2 or len(polled) == polls


def test_reasons_are_counted_from_the_errors_file(tmp_path: Path) -> None:
    errors = tmp_path / "errors.jsonl"
    entries = [{"kind": "bad_input", "reason": "invalid JSON"}] * 3
    entries.append({"kind": "lookup_failed", "reason": "timeout"})
    errors.write_text("".join(json.dumps(e) + "\n" for e in entries) + "{torn\n")
    found, note = count_reasons(errors, [])
    assert found == {"bad_input: invalid JSON": 3, "lookup_failed: timeout": 1}
    assert note == f"{errors}: every entry"
    found, note = count_reasons(None, [{"kind": "bad_input", "reason": "x"}])
    assert found == {"bad_input: x": 1}
    assert "only the first" in note
    assert count_reasons(tmp_path / "nope.jsonl", [])[1].endswith("not written")


def test_reason_counting_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncwait.cli import report

    monkeypatch.setattr(report, "_MAX_REASONS", 3)
    monkeypatch.setattr(report, "_MAX_ERROR_LINES", 8)
    errors = tmp_path / "errors.jsonl"
    lines = [{"kind": "bad_input", "reason": f"r{i % 5} " + "x" * 1000} for i in range(10)]
    errors.write_text("".join(json.dumps(e) + "\n" for e in lines))
    found, note = count_reasons(errors, [])
    assert sum(found.values()) == 8
    assert note == f"{errors}: its first 8 entries"
    assert len(found) == 4  # three reasons, then the others as one
    assert found["(other reasons)"] == 2  # r3 and r4 (lines 3, 4), new past the third
    assert max(len(reason) for reason in found) <= report._REASON_CHARS


def test_the_report_replaces_a_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("old")
    write_report(path, "<p>new</p>")
    assert path.read_text() == "<p>new</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "missing" / "report.html", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return make_data(tmp_path)


def test_run_writes_the_report_for_success_and_failure(data_dir: Path) -> None:
    job = write_job(data_dir)
    report = data_dir / "report.html"
    assert main(["run", "--quiet", str(job), "--report", str(report)]) == 0
    parsed = parse(report.read_text())
    assert "throughput" in dict(parsed.charts)
    assert "succeeded" in report.read_text()
    # A failed job (too many bad lines) still gets its report, with its status.
    assert main(["run", "--quiet", str(job), "--max-errors", "0", "--report", str(report)]) == 1
    page = report.read_text()
    parse(page)
    assert 'class="status-failed">failed' in page
    assert [p.name for p in data_dir.iterdir() if p.name.startswith(".report")] == []


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing/report.html", r"--report: folder does not exist: "),
        (".", r"--report: .* is a folder, not a file"),
        ("events.jsonl", r"--report and source.path are the same file"),
        ("job.toml", r"--report and the job file are the same file"),
        ("summary.json", r"--report and --json-summary are the same file"),
    ],
)
def test_a_bad_report_path_is_refused_before_the_job_starts(
    data_dir: Path, capsys: pytest.CaptureFixture[str], where: str, message: str
) -> None:
    job = write_job(data_dir)
    before = {p.name: p.read_bytes() for p in data_dir.iterdir() if p.is_file()}
    report = data_dir / where
    command = ["run", "--quiet", str(job), "--report", str(report)]
    assert main([*command, "--json-summary", str(data_dir / "summary.json")]) == 2
    assert re.search(message, capsys.readouterr().err)
    after = {p.name: p.read_bytes() for p in data_dir.iterdir() if p.is_file()}
    assert after == before  # nothing ran: no output, no summary, the inputs intact


def test_demo_refuses_a_report_in_a_missing_folder_before_generating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    command = ["demo", "--quiet", "--events", "10", "--dir", str(out)]
    assert main([*command, "--report", str(tmp_path / "no" / "r.html")]) == 2
    assert "--report: folder does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_check_report_is_a_config_error(data_dir: Path) -> None:
    from asyncwait import jobfile
    from asyncwait.cli.report import check_report

    spec = jobfile.load(write_job(data_dir))
    with pytest.raises(ConfigError, match=r"--report and sink\.path are the same file"):
        check_report(data_dir / "out.jsonl", spec, json_summary=None)
    check_report(data_dir / "report.html", spec, json_summary=None)
    assert not (data_dir / "report.html").exists()
