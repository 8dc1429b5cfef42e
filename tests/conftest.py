"""Fixtures shared by the unit and property tests of the core operator."""

from __future__ import annotations

import asyncio

import pytest

from asyncwait import StreamElement
from tests.helpers import Gate


def pytest_configure(config: pytest.Config) -> None:
    # looptime's plugin asks the loop policy for the current loop before every test. On
    # Python 3.11, for a sync test that runs before any async one, the policy then creates
    # a loop that nobody closes, and its ResourceWarning fails whichever test the garbage
    # collector happens to run in (filterwarnings = error). Marking the main thread's loop
    # as explicitly unset makes the policy raise instead, which looptime handles.
    asyncio.set_event_loop(None)


@pytest.fixture
def gate() -> Gate:
    """A plain async function whose calls wait until the test releases them."""
    return Gate()


@pytest.fixture
def out() -> list[StreamElement]:
    """Everything an operator emits, in order: pass ``out.append`` as ``emit``."""
    return []
