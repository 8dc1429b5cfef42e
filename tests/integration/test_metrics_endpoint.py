"""The Prometheus endpoint and the JSON log of real runs: the CLI in a subprocess, HTTP on
loopback, parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asyncwait import MetricsEndpoint, jobfile, metrics_registry
from asyncwait.cli import demo
from asyncwait.cli.summary import summarize
from asyncwait.cli.views import ProgressView

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

JOB_TOTALS = (
    "asyncwait_events_in",
    "asyncwait_events_out",
    "asyncwait_errors",
    "asyncwait_skipped",
    "asyncwait_dead_letters",
    "asyncwait_checkpoints",
)
OPERATOR_FAMILIES = (
    "asyncwait_operator_in_flight",
    "asyncwait_operator_capacity",
    "asyncwait_operator_latency_seconds",
    "asyncwait_operator_retries",
    "asyncwait_operator_timeouts",
    "asyncwait_operator_failures",
    "asyncwait_lookup_cache_hits",
    "asyncwait_lookup_cache_misses",
    "asyncwait_lookup_matched",
    "asyncwait_lookup_missed",
)
# Families with a sample only when the job uses the feature (a breaker, adaptive limits).
FEATURE_FAMILIES = (
    "asyncwait_lookup_breaker_open",
    "asyncwait_lookup_breaker_openings",
    "asyncwait_lookup_concurrency_limit",
)

EVENTS_IN = ("asyncwait_events_in", "asyncwait_events_in_total")

Scrape = dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse(text: str) -> Scrape:
    """Family name -> {(sample name, sorted labels): value}."""
    found: Scrape = {}
    for family in text_string_to_metric_families(text):
        samples = found.setdefault(family.name, {})
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(port: int) -> Scrape | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            return parse(reply.read().decode())
    except (urllib.error.URLError, ConnectionError):
        return None  # not listening yet, or already closed


def value(found: Scrape, family: str, sample: str | None = None, **labels: str) -> float:
    wanted = sample or family
    for (name, have), v in found[family].items():
        if name == wanted and all(dict(have).get(k) == x for k, x in labels.items()):
            return v
    raise KeyError(f"{wanted} {labels}")


def demo_command(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "asyncwait",
        "demo",
        "--dir",
        str(tmp_path / "demo"),
        "--seed",
        "11",
        *extra,
    ]


def test_a_demo_run_is_scraped_while_it_runs(tmp_path: Path) -> None:
    port = free_port()
    summary_path = tmp_path / "summary.json"
    command = demo_command(
        tmp_path,
        "--events",
        "20000",
        "--users",
        "20000",  # mostly cache misses: slow enough to scrape twice
        "--latency-ms",
        "20",
        "--quiet",
        "--metrics-port",
        str(port),
        "--json-summary",
        str(summary_path),
    )
    child = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    scrapes: list[Scrape] = []
    try:
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            found = scrape(port)
            if found is not None and value(found, "asyncwait_job_running") == 1:
                # Kept when events came in since the last one kept (the operator is open:
                # its join's and cache's counters are there from then on).
                seen = value(scrapes[-1], *EVENTS_IN) if scrapes else 0
                if value(found, *EVENTS_IN) > seen:
                    scrapes.append(found)
            time.sleep(0.2)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, stderr.decode()
    assert len(scrapes) >= 2, "the run ended before two scrapes with progress between them"
    first, last = scrapes[0], scrapes[-1]
    summary = json.loads(summary_path.read_text())
    job = summary["job"]
    (op,) = summary["operators"]
    for found in (first, last):
        for family in (*JOB_TOTALS, *OPERATOR_FAMILIES, *FEATURE_FAMILIES):
            assert family in found, family
        for family in JOB_TOTALS:
            assert value(found, family, f"{family}_total", job=job) >= 0
        for family in OPERATOR_FAMILIES:
            labels = {dict(labels).get("operator") for _, labels in found[family]}
            assert labels == {op["name"]}, family
            assert all(dict(labels)["job"] == job for _, labels in found[family])
        latency = "asyncwait_operator_latency_seconds"
        count = value(found, latency, f"{latency}_count", operator=op["name"])
        assert value(found, latency, f"{latency}_bucket", operator=op["name"], le="+Inf") == count
    # The counters grow between two scrapes and never past the final summary.
    pairs = [
        ("asyncwait_events_in", summary["events_in"]),
        ("asyncwait_events_out", summary["events_out"]),
        ("asyncwait_lookup_cache_misses", op["cache_misses"]),
        ("asyncwait_lookup_matched", op["matched"]),
    ]
    for family, final in pairs:
        before = value(first, family, f"{family}_total")
        after = value(last, family, f"{family}_total")
        assert before <= after <= final, family
    assert value(first, *EVENTS_IN) < value(last, *EVENTS_IN)
    in_flight = value(last, "asyncwait_operator_in_flight", operator=op["name"])
    assert 0 <= in_flight <= value(last, "asyncwait_operator_capacity", operator=op["name"])
    assert scrape(port) is None  # the endpoint closed with the job


async def test_final_values_equal_the_summary(tmp_path: Path) -> None:
    """In process, after the run: the registry's values are the summary's, exactly."""
    data = demo.generate(tmp_path / "demo", events=4000, users=500, seed=5)
    spec = jobfile.load(demo.write_job(data, capacity=20))
    spec = dataclasses.replace(
        spec, checkpoint=jobfile.CheckpointSpec(interval=0.05, dir=tmp_path / "checkpoints")
    )
    env = jobfile.build(spec, wrap_lookup=demo.slowed(0.002))
    endpoint = MetricsEndpoint(metrics_registry(env), port=0)
    async with endpoint:
        result = await env.execute_async()
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(endpoint.url).read())
    found = parse(text.decode())
    summary = summarize(ProgressView.of(result), job=spec.name)
    job = spec.name
    for family, key in (
        ("asyncwait_events_in", "events_in"),
        ("asyncwait_events_out", "events_out"),
        ("asyncwait_errors", "errors"),
        ("asyncwait_skipped", "skipped"),
        ("asyncwait_dead_letters", "dead_letters"),
    ):
        assert value(found, family, f"{family}_total", job=job) == summary[key], family
    assert summary["errors"] == data.malformed > 0
    (op,) = summary["operators"]
    name = op["name"]
    for family, key in (
        ("asyncwait_operator_retries", "retries"),
        ("asyncwait_operator_timeouts", "timeouts"),
        ("asyncwait_operator_failures", "failures"),
        ("asyncwait_operator_emitted", "emitted"),
        ("asyncwait_lookup_cache_hits", "cache_hits"),
        ("asyncwait_lookup_cache_misses", "cache_misses"),
        ("asyncwait_lookup_matched", "matched"),
        ("asyncwait_lookup_missed", "missed"),
    ):
        assert value(found, family, f"{family}_total", job=job, operator=name) == op[key], family
    assert value(found, "asyncwait_operator_capacity", job=job, operator=name) == 20
    assert value(found, "asyncwait_operator_in_flight", job=job, operator=name) == 0
    assert op["cache_hits"] > 0
    assert op["matched"] > 0
    # Checkpoints: the count, and one duration observed per checkpoint.
    assert result.checkpoints >= 1
    assert (
        value(found, "asyncwait_checkpoints", "asyncwait_checkpoints_total") == result.checkpoints
    )
    duration = "asyncwait_checkpoint_duration_seconds"
    assert value(found, duration, f"{duration}_count", job=job) == result.checkpoints
    assert value(found, duration, f"{duration}_sum", job=job) > 0
    assert value(found, "asyncwait_job_running", job=job) == 0


async def test_the_endpoint_answers_only_get_metrics(tmp_path: Path) -> None:
    from asyncwait import StreamEnvironment, sinks

    env = StreamEnvironment(name="tiny")
    env.from_collection([1, 2]).sink_to(sinks.collect())
    endpoint = MetricsEndpoint(metrics_registry(env), port=0)
    assert "idle" in repr(endpoint)

    async def request(head: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        writer.write(head)
        reply = await reader.read()
        writer.close()
        await writer.wait_closed()
        return reply

    async with endpoint:
        assert "serving" in repr(endpoint)
        ok = await request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await request(b"HEAD /metrics HTTP/1.1\r\n\r\n")
        missing = await request(b"GET /other HTTP/1.1\r\n\r\n")
        post = await request(b"POST /metrics HTTP/1.1\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")
    assert b"asyncwait_events_in_total" in ok
    assert head.startswith(b"HTTP/1.1 200 ")
    assert head.endswith(b"\r\n\r\n")
    assert missing.startswith(b"HTTP/1.1 404 ")
    assert post.startswith(b"HTTP/1.1 405 ")
    assert "closed" in repr(endpoint)
    with pytest.raises(ConnectionRefusedError):  # closed with the block: nothing listens
        await request(b"GET /metrics HTTP/1.1\r\n\r\n")


def occupied() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def test_a_port_in_use_is_refused_before_the_demo_writes_anything(tmp_path: Path) -> None:
    with occupied() as sock:
        port = sock.getsockname()[1]
        command = demo_command(tmp_path, "--events", "100", "--metrics-port", str(port))
        done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"error: --metrics-port: cannot serve metrics on 127.0.0.1:{port}"
    )
    assert not (tmp_path / "demo").exists()


def test_a_job_file_port_in_use_is_refused_naming_the_field(tmp_path: Path) -> None:
    data = demo.generate(tmp_path / "demo", events=100, users=10, seed=1)
    job = demo.write_job(data)
    out = tmp_path / "demo" / "enriched.jsonl"
    with occupied() as sock:
        port = sock.getsockname()[1]
        job.write_text(job.read_text() + f"\n[metrics]\nport = {port}\n")
        command = [sys.executable, "-m", "asyncwait", "run", str(job)]
        done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=60)
        host = [*command, "--metrics-host", "192.0.2.1"]  # TEST-NET: not an address of ours
        refused = subprocess.run(host, env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{job}: metrics.port: cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert refused.returncode == 2, refused.stderr
    assert "--metrics-host: cannot serve metrics on 192.0.2.1" in refused.stderr
    assert not out.exists()


def test_the_json_log_is_one_object_a_line_with_lifecycle_events_once(tmp_path: Path) -> None:
    data = demo.generate(tmp_path / "demo", events=3000, users=300, seed=2)
    job = demo.write_job(data)
    job.write_text(job.read_text() + f'\n[checkpoint]\ninterval = 60\ndir = "{tmp_path / "cp"}"\n')
    command = [sys.executable, "-m", "asyncwait", "run", str(job), "--log-format", "json"]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines: list[dict[str, Any]] = [json.loads(line) for line in done.stderr.splitlines()]
    for line in lines:
        assert set(line) >= {"time", "level", "job", "operator", "event", "message", "fields"}
        assert line["job"] == data.directory.name or line["job"] == "demo-enrich-browse-events"
    events = [line["event"] for line in lines]
    assert events == ["job_started", "checkpoint_completed", "job_finished", "job_summary"]
    summary = lines[-1]["fields"]
    assert summary["events_in"] == 3000
    assert summary["status"] == "succeeded"
    assert lines[1]["fields"]["final"] is True
    # Run again: the finished job starts over; --log-level warning hides the library's info
    # lines, not the summary (the command's output).
    again = subprocess.run(
        [*command, "--log-level", "warning"], env=ENV, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr
    assert [json.loads(line)["event"] for line in again.stderr.splitlines()] == ["job_summary"]
