"""The public surface: one sorted ``__all__`` at the top, an ``__all__`` tuple per module."""

import __future__

import importlib
import inspect
import re
import types
from typing import Any

import pytest

import asyncwait

CONCEPT_MODULES = [
    "elements",
    "errors",
    "function",
    "retry",
    "queues",
    "operator",
    "waits",
    "metrics",
    "runtime",
    "prometheus",
    "watermarks",
    "sources",
    "sinks",
    "cache",
    "join",
    "lookups",
]


def _isort_key(name: str) -> tuple[int, list[Any]]:
    """ruff RUF022's isort-style order: CONSTANTS, then Classes, then the rest; natural."""
    if name.isupper() and len(name) > 1:
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    parts = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return group, parts


def test_all_is_sorted_and_has_no_duplicates() -> None:
    assert list(asyncwait.__all__) == sorted(asyncwait.__all__, key=_isort_key)
    assert len(set(asyncwait.__all__)) == len(asyncwait.__all__)


def test_every_name_in_all_exists() -> None:
    for name in asyncwait.__all__:
        assert hasattr(asyncwait, name), name


def test_all_equals_the_public_names_of_the_package() -> None:
    exported = set(asyncwait.__all__)
    public = {
        name
        for name, value in vars(asyncwait).items()
        if not name.startswith("_")
        # Importing a submodule binds it on the package; it is public only when exported.
        and not (isinstance(value, types.ModuleType) and name not in exported)
        and not isinstance(value, __future__._Feature)  # `from __future__ import ...`
    }
    assert public == exported


def test_exported_modules_are_submodules() -> None:
    for name in asyncwait.__all__:
        value = getattr(asyncwait, name)
        if isinstance(value, types.ModuleType):
            assert value.__name__ == f"asyncwait.{name}"


@pytest.mark.parametrize("name", CONCEPT_MODULES)
def test_every_concept_module_has_an_all_tuple(name: str) -> None:
    module = importlib.import_module(f"asyncwait.{name}")
    names = module.__all__
    assert isinstance(names, tuple)
    assert list(names) == sorted(names, key=_isort_key)
    for exported in names:
        assert hasattr(module, exported), f"asyncwait.{name}.{exported}"
    # Every public class or function defined in the module is exported by it.
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    }
    assert defined <= set(names)


@pytest.mark.parametrize("name", CONCEPT_MODULES)
def test_top_level_names_are_the_concept_module_objects(name: str) -> None:
    module = importlib.import_module(f"asyncwait.{name}")
    for exported in module.__all__:
        if name == "lookups" and exported == "threaded":
            # Namespaced, another concept: a lookup table over a blocking DB-API driver,
            # where the top-level `threaded` wraps any blocking function.
            continue
        if exported in asyncwait.__all__:
            assert getattr(asyncwait, exported) is getattr(module, exported)


def test_the_contract_names_are_exported() -> None:
    contract = {
        "AsyncFunction",
        "AsyncFunctionError",
        "AsyncTimeoutError",
        "AsyncWaitError",
        "AsyncWaitOperator",
        "ConfigError",
        "OutputMode",
        "Record",
        "RuntimeContext",
        "StreamElement",
        "Watermark",
        "key_ordered_wait",
        "ordered_wait",
        "retry",
        "threaded",
        "unordered_wait",
    }
    assert contract <= set(asyncwait.__all__)
    retry_names = {
        "ANY_EXCEPTION",
        "EMPTY_RESULT",
        "NO_RETRY",
        "exception_type",
        "exponential_backoff",
        "fixed_delay",
    }
    assert retry_names <= set(asyncwait.retry.__all__)
    assert {"in_flight", "queued", "emitted", "retries", "timeouts", "failures"} <= {
        field.name for field in asyncwait.OperatorStatistics.__dataclass_fields__.values()
    }
