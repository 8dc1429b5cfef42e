"""Bad input: how sources, steps and sinks route a malformed element aside (private).

The job's errors file (``asyncwait._dataflow.errorlog``) receives what they reject.

Each entry has a ``kind``: ``"bad_input"`` for these, ``"lookup_failed"`` for an event
whose lookup finally failed with ``on_error = "dead_letter"`` (a dead letter: the ``event``
itself, the ``reason``, the ``attempts`` and the ``operator``).

Each bad input entry has at least ``source`` (where the element came from: a path, ``<stdin>``,
``collection``), ``line`` (1-based, or ``null`` when unknown), ``raw`` (the raw text, or the
element's value as JSON once it was parsed) and ``reason``; an element rejected by a later
step also names that step in ``operator``.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from .elements import Record
from .errors import BadInputError


class Reject(Protocol):
    """What a source, a sink or a step calls to route one bad element to the errors file.

    ``error`` explains the problem (its ``source``/``line``/``raw`` fill the entry when set);
    ``record`` is the element, when there is one. The call raises :class:`BadInputError`
    once the job's ``max_errors`` is exceeded; let that propagate.
    """

    def __call__(self, error: BadInputError, record: Record[Any] | None = None, /) -> None:
        """Route the bad element described by ``error`` aside."""
        ...


def describe(value: object) -> str:
    """The value of a parsed element as text for the errors file (JSON when possible)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def as_event(value: object) -> object:
    """``value`` as a dead letter's ``event``: itself when JSON can hold it, else as text."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return describe(value)
    return value


def failure_reason(error: BaseException) -> str:
    """Why a call failed, for a dead letter: the error's type and message."""
    name = type(error).__name__
    if isinstance(error, TimeoutError) and not str(error):
        return f"{name}: timed out"
    text = str(error)
    return f"{name}: {text}" if text else name
