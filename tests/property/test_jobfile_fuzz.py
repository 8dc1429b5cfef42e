"""Random job files through `asyncwait validate`: exit 0, or exit 2 with one line naming a field.

Hypothesis builds TOML documents two ways: a valid job file with random mutations (a field
deleted, replaced by a value of any type, junk added at any depth), and documents of random
tables, values and keys. Whatever it builds, ``validate`` must not raise: it returns 0, or
2 with ``error: <file>: <field>...`` (the file alone for TOML syntax errors).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncwait.cli import main

VALID: dict[str, Any] = {
    "job": {"name": "fuzz"},
    "source": {
        "type": "jsonl",
        "path": "events.jsonl",
        "watermarks": {
            "timestamp_field": "eventTime",
            "timestamp_format": "%Y-%m-%d %H:%M:%S",
            "max_out_of_orderness_ms": 5000,
        },
    },
    "lookup": [
        {
            "type": "sqlite",
            "path": "dim.db",
            "table": "dim_user",
            "key": "user_id",
            "on": "userID",
            "columns": ["age"],
            "how": "left",
            "mode": "ordered",
            "capacity": 10,
            "timeout": 1.5,
            "cache": {"type": "lru", "max_size": 100, "ttl": 300, "miss_ttl": 30},
            "retry": {"type": "exponential", "max_retries": 3, "initial_delay": 0.1,
                      "max_delay": 2.0},
        },
        {"type": "postgres", "dsn": "postgresql://app@db:5432/shop", "table": "t", "key": "k",
         "on": "userID", "schema": "public", "pool_size": 4},
        {"type": "mysql", "dsn": "mysql://app@db:3306/shop", "table": "t", "key": "k",
         "on": "userID", "retry": {"type": "fixed", "max_retries": 1, "delay": 0.5}},
        {"type": "redis", "url": "redis://127.0.0.1:6379/0", "on": "userID",
         "key_prefix": "u:", "value": "json", "cache": {"type": "full"}},
        {"type": "http", "url": "http://127.0.0.1:8080/users/{key}", "on": "userID",
         "method": "GET"},
    ],
    "sink": {"type": "jsonl", "path": "out.jsonl"},
    "checkpoint": {"interval": 1.0, "dir": "cp"},
    "errors": {"path": "errors.jsonl", "max_errors": 10},
}  # fmt: skip

TABLES = ("job", "source", "lookup", "sink", "checkpoint", "errors")
FIELDS = (
    "type", "path", "name", "dsn", "url", "table", "key", "on", "columns", "how", "mode",
    "capacity", "timeout", "cache", "retry", "interval", "dir", "max_errors", "watermarks",
    "timestamp_field", "timestamp_format", "max_out_of_orderness_ms", "max_size", "ttl",
    "miss_ttl", "reload_interval", "max_retries", "delay", "initial_delay", "max_delay",
    "multiplier", "jitter", "key_prefix", "value", "method", "schema", "pool_size",
    "max_batch_size", "max_batch_wait", "max_queries",
)  # fmt: skip
WORDS = (
    "jsonl", "csv", "stdin", "stdout", "sqlite", "postgres", "mysql", "redis", "http",
    "lru", "full", "fixed", "exponential", "left", "inner", "ordered", "unordered",
    "key_ordered", "events.jsonl", "dim.db", "out.jsonl", ".", "..", "/", "/dev/null",
    "job.toml", "cp", "postgress://x@y/z", "host=db dbname=x", "mysq://a@b/c",
    "rediss://h/0", "unix:///tmp/r.sock", "https://h/{key}", "http://h/x", "epoch_ms", "%Y",
    "a" * 300, "x/" * 200, "~", "~nobody/x",
)  # fmt: skip

# Paths that trip file systems up: too long, NUL, folders, devices, the job's own files.
PATHS = (
    "a" * 300, "x/" * 2100, "a\x00b", "", ".", "..", "/", "/dev/null", "~", "~no-such-user/x",
    "events.jsonl", "./events.jsonl", "dim.db", "dim.db-wal", "job.toml", "out.jsonl",
    "errors.jsonl", "cp", "cp/fuzz", "cp/fuzz/out.jsonl", "missing/out.jsonl",
    "events.jsonl/x",
)  # fmt: skip
PATH_FIELDS = (
    ("source", "path"), ("sink", "path"), ("errors", "path"), ("checkpoint", "dir"),
    ("lookup", 0, "path"),
)  # fmt: skip

# ------------------------------------------------------------------ values and documents

texts = st.text(st.characters(codec="utf-8"), max_size=12)  # no lone surrogates
keys = st.one_of(st.sampled_from(FIELDS + TABLES), texts)
scalars = st.one_of(
    st.sampled_from(WORDS),
    texts,
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([date(2016, 6, 6), datetime(2016, 6, 6, 7, 3, 42, tzinfo=UTC)]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


def toml_key(key: str) -> str:
    return toml_string(key)


def toml_string(text: str) -> str:
    # JSON escapes are TOML escapes; DEL must be escaped in TOML too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value) if "e" in repr(value) or "." in repr(value) else f"{value}.0"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime | date):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in doc.items())


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """The valid job with a few random changes at random depths."""
    doc = copy.deepcopy(VALID)
    for where in draw(st.lists(st.sampled_from(PATH_FIELDS), max_size=2)):
        *parents, field = where
        node: Any = doc
        for step in parents:
            node = node[step]
        node[field] = draw(st.one_of(st.sampled_from(PATHS), texts))
    for _ in range(draw(st.integers(0, 4))):
        node = doc
        # Walk down a random path of existing tables and arrays.
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(
                st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node)))
            )
            child = node[key]
            if not isinstance(child, dict | list) or not child:
                break
            node = child
        if isinstance(node, dict):
            action = draw(st.sampled_from(["delete", "replace", "add"]))
            if action == "delete" and node:
                del node[draw(st.sampled_from(sorted(node)))]
            elif action == "replace" and node:
                node[draw(st.sampled_from(sorted(node)))] = draw(values)
            else:
                node[draw(keys)] = draw(values)
        elif isinstance(node, list):
            index = draw(st.integers(-1, len(node) - 1))  # -1: append
            if index >= 0:
                node[index] = draw(values)
            else:
                node.append(draw(values))
    return doc


random_documents = st.dictionaries(keys, values, max_size=6)


# ------------------------------------------------------------------ the check


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "events.jsonl").write_text('{"userID": "user_1"}\n')
    (folder / "job.toml").write_text("")
    with contextlib.closing(sqlite3.connect(folder / "dim.db")) as db:
        db.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
        db.commit()
    return folder


def names_a_field(message: str, doc: dict[str, Any]) -> bool:
    """Whether ``message`` (after ``<file>: ``) starts with a field of ``doc`` or a table."""
    ends = [i for i in (message.find(": "), message.find(" and "), message.find(" (")) if i > 0]
    field = message[: min(ends)] if ends else message
    shown = [shown_key(k) for k in (*doc, *TABLES)]
    return any(field == k or field.startswith((f"{k}.", f"{k}[")) for k in shown)


def shown_key(key: str) -> str:
    """A key as messages show it: bare, or quoted as TOML would write it."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def validate(folder: Path, text: str) -> tuple[int, str]:
    job = folder / "job.toml"
    job.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(job)])
    return code, err.getvalue()


def check(folder: Path, doc: dict[str, Any]) -> None:
    files = sorted(p.name for p in folder.iterdir())
    code, err = validate(folder, toml_document(doc))
    assert code in (0, 2), err
    if code == 0:
        assert err == ""
    else:
        prefix = f"error: {folder / 'job.toml'}: "
        assert err.startswith(prefix), err
        assert err.endswith("\n")
        assert err.count("\n") == 1, err  # one line, no traceback
        message = err[len(prefix) :]
        assert message.startswith("not a valid TOML file: ") or names_a_field(message, doc), err
    assert sorted(p.name for p in folder.iterdir()) == files  # validate creates nothing


FUZZ = settings(max_examples=200, deadline=None)


@FUZZ
@given(doc=mutated())
def test_a_mutated_job_file_is_valid_or_names_a_field(folder: Path, doc: dict[str, Any]) -> None:
    check(folder, doc)


@FUZZ
@given(doc=random_documents)
def test_a_random_document_is_valid_or_names_a_field(folder: Path, doc: dict[str, Any]) -> None:
    check(folder, doc)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=40))
def test_text_that_is_not_toml_names_the_file(folder: Path, text: str) -> None:
    code, err = validate(folder, text.encode("utf-8", "replace").decode("utf-8"))
    assert code == 2, err
    assert err.startswith(f"error: {folder / 'job.toml'}: "), err
    assert err.count("\n") == 1, err


def test_the_valid_job_file_is_valid(folder: Path) -> None:
    code, err = validate(folder, toml_document(VALID))
    assert (code, err) == (0, "")
