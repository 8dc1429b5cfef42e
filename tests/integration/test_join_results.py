"""Join results through the CLI, against real services: what matched, what failed, and why.

A join that matches nothing (a URL typo: every lookup 404) says so; a service answering
200 with HTML fails the job instead of "succeeding" with every event in the errors file,
asking each key once per attempt; a Redis value that is not JSON fails the lookup; a
``Retry-After`` wait is counted as a retry.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from ._httpserver import HttpServer
from ._redis import RedisServer, seed_users


@pytest.fixture
def service(http_server: HttpServer) -> HttpServer:
    http_server.reset()
    return http_server


def run_job(
    directory: Path, lookup: str, events: list[dict[str, Any]], *more: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Write ``events`` and a job joining them with ``lookup``; run it; return its summary."""
    (directory / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (directory / "job.toml").write_text(
        f"""
[job]
name = "enrich"

[source]
type = "jsonl"
path = "events.jsonl"

{lookup}

[sink]
type = "jsonl"
path = "out.jsonl"

[errors]
path = "errors.jsonl"
"""
    )
    command = [sys.executable, "-m", "asyncwait", "run", "job.toml"]
    command += ["--json-summary", "summary.json", *more]
    done = subprocess.run(
        command, cwd=directory, capture_output=True, text=True, timeout=120, check=False
    )
    return done, json.loads((directory / "summary.json").read_text())


def http_lookup(url: str, retry: str = "") -> str:
    return f"""
[[lookup]]
type = "http"
url = "{url}"
on = "userID"
capacity = 50
cache = {{ type = "lru", max_size = 100, miss_ttl = 60 }}
{retry}
"""


def test_a_url_typo_that_misses_every_key_warns_and_shows_matched_0(
    service: HttpServer, tmp_path: Path
) -> None:
    typo = service.url_template.replace("/users/", "/userz/")  # every lookup: 404, a miss
    events = [{"userID": f"user_{i % 50}", "n": i} for i in range(1100)]
    done, summary = run_job(tmp_path, http_lookup(typo), events)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: lookup[0]:http: lookup join on {typo}: ")
    assert "none of the first 1,000 lookups found a row" in warnings[0]
    assert "event field 'userID'" in warnings[0]
    assert "WARNING" not in done.stderr
    (op,) = summary["operators"]
    assert (op["matched"], op["missed"], op["dropped"], op["failed"]) == (0, 1100, 0, 0)
    assert summary["status"] == "succeeded"
    assert service.stats()["requests"] == {}  # the typo reached no user


def test_html_with_200_fails_the_job_asking_each_key_once(
    service: HttpServer, tmp_path: Path
) -> None:
    events = [{"userID": f"user_{i}", "n": i} for i in range(5)]
    done, summary = run_job(tmp_path, http_lookup(service.portal_template), events, "--quiet")
    assert done.returncode == 1, done.stderr
    assert summary["status"] == "failed"
    assert "answered 200 with a body that is not JSON (text/html" in summary["error"]
    assert f"error: {summary['error']}" in done.stderr
    assert "Traceback" not in done.stderr
    # Not bad input: no event went to the errors file.
    assert summary["errors"] == 0
    assert (tmp_path / "errors.jsonl").read_text() == ""
    # Each key was asked once (not once in the batch and once more on its own).
    assert service.stats()["requests"] == {f"user_{i}": 1 for i in range(5)}
    assert summary["operators"][0]["failed"] >= 1


def test_html_with_200_is_asked_once_per_attempt(service: HttpServer, tmp_path: Path) -> None:
    retry = 'retry = { type = "fixed", max_retries = 2, delay = 0.01 }'
    lookup = http_lookup(service.portal_template, retry)
    done, summary = run_job(tmp_path, lookup, [{"userID": "user_1"}], "--quiet")
    assert done.returncode == 1, done.stderr
    assert service.stats()["requests"] == {"user_1": 3}  # 3 attempts, one request each
    (op,) = summary["operators"]
    assert (op["retries"], op["failed"], op["failures"], op["matched"]) == (2, 3, 1, 0)


def test_retry_after_waits_are_counted_as_retries(service: HttpServer, tmp_path: Path) -> None:
    service.faults(fail={"user_1": [[429, "0"]], "user_2": [[503, "0"], [503, "0"]]})
    events = [{"userID": f"user_{i}", "n": i} for i in range(4)]
    done, summary = run_job(tmp_path, http_lookup(service.url_template), events, "--quiet")
    assert done.returncode == 0, done.stderr
    (op,) = summary["operators"]
    assert (op["retry_after_waits"], op["retries"]) == (3, 3)
    assert (op["matched"], op["failed"]) == (4, 0)
    assert op["counters"]["retry_after_waits"] == 3
    assert service.stats()["requests"] == {"user_0": 1, "user_1": 2, "user_2": 3, "user_3": 1}


def test_a_redis_value_that_is_not_json_fails_the_lookup(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = f"joinres-{uuid.uuid4().hex[:8]}:"
    seed_users(redis_server, prefix, 10, value="json")
    with redis_server.client() as client:
        client.set(f"{prefix}user_3", "<html>maintenance</html>")
    lookup = f"""
[[lookup]]
type = "redis"
url = "{redis_server.url}"
key_prefix = "{prefix}"
value = "json"
on = "userID"
"""
    events = [{"userID": f"user_{i}", "n": i} for i in range(10)]
    done, summary = run_job(tmp_path, lookup, events, "--quiet")
    assert done.returncode == 1, done.stderr
    assert summary["status"] == "failed"
    assert f"the value of Redis key '{prefix}user_3' is not JSON" in summary["error"]
    assert summary["errors"] == 0
    assert summary["operators"][0]["failed"] >= 1
    assert redis_server.password not in done.stderr
