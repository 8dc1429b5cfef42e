"""What happens to an element whose call finally failed: the ``on_error`` policy (private).

Flink fails the job when an element's call fails for good (after its retries, or at its
deadline). A job that runs for hours against a store that misbehaves now and then wants
more choice, one policy per operator::

    final failure ─► FAIL         the job fails (Flink's behaviour; the default)
                  ├► SKIP         the element emits nothing; counted
                  ├► DEAD_LETTER  the element goes to the dead-letter callback (the job's
                  │               errors file: kind "lookup_failed", the reason, the attempts)
                  └► DEFAULT      the element emits ``default(value, error)`` instead

A refused call (:class:`~asyncwait.CircuitOpenError`) is a final failure at once: it is
never retried, so with SKIP or DEAD_LETTER a job keeps flowing while the store is down.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any, final

from ..elements import StreamElement

__all__ = ("DeadLetter", "ErrorPolicy", "OnError")

DeadLetter = Callable[[StreamElement, BaseException, int], Iterable[Any] | None]
"""``dead_letter(element, error, attempts)``: where a dead letter goes (the errors file).

Also the form of ``open(skipped=...)``. What it returns (``None``: nothing) is emitted in the
element's place: an embedding runtime emits a marker, so that the element is set aside when
its turn to be emitted comes (after a checkpoint's snapshot, never twice).
"""


class OnError(enum.Enum):
    """What an operator does with an element whose call finally failed or timed out.

    ``OnError("dead_letter")`` (any case) names a policy by its value, as job files do.
    """

    FAIL = "fail"  # the operator fails (the next call raises AsyncFunctionError)
    SKIP = "skip"  # nothing is emitted for the element; counted
    DEAD_LETTER = "dead_letter"  # the element goes to the dead-letter callback; counted
    DEFAULT = "default"  # the element's outputs are default(value, error); counted

    @classmethod
    def _missing_(cls, value: object) -> OnError | None:
        if isinstance(value, str):
            for policy in cls:
                if policy.value == value.lower():
                    return policy
        return None


@final
class ErrorPolicy:
    """Turns an element's final failure into its outputs, or leaves it a failure.

    Args:
        on_error: the policy.
        default: with ``DEFAULT``, ``default(value, error)`` returns the element's outputs.
    """

    __slots__ = (
        "_default",
        "dead_letter",
        "dead_letters",
        "defaulted",
        "on_error",
        "on_skip",
        "skipped",
    )

    def __init__(
        self,
        on_error: OnError,
        default: Callable[[Any, BaseException], Iterable[Any]] | None,
    ) -> None:
        self.on_error = on_error
        self._default = default
        # Set by the operator's open(): where DEAD_LETTER sends an element, and what SKIP
        # emits in a skipped element's place (nothing without it).
        self.dead_letter: DeadLetter | None = None
        self.on_skip: DeadLetter | None = None
        self.skipped = 0
        self.dead_letters = 0
        self.defaulted = 0

    def route(self, element: StreamElement, value: Any, exc: BaseException, attempts: int) -> Any:
        """The outputs of a failed element, or ``None`` when it fails the operator.

        Raises what ``default`` or the dead-letter callback raises (e.g. the job's
        ``max_errors`` overflow): the element then fails after all.
        """
        policy = self.on_error
        if policy is OnError.SKIP:
            on_skip = self.on_skip
            outputs = None if on_skip is None else on_skip(element, exc, attempts)
            self.skipped += 1
            return () if outputs is None else tuple(outputs)
        if policy is OnError.DEAD_LETTER:
            dead_letter = self.dead_letter
            if dead_letter is None:
                return None  # nowhere to put it: checked at open(), kept safe here
            outputs = dead_letter(element, exc, attempts)
            self.dead_letters += 1
            return () if outputs is None else tuple(outputs)
        if policy is OnError.DEFAULT:
            assert self._default is not None  # the operator checks at construction
            outputs = tuple(self._default(value, exc))
            self.defaulted += 1
            return outputs
        return None

    def __repr__(self) -> str:
        return (
            f"<ErrorPolicy {self.on_error.value} skipped={self.skipped} "
            f"dead_letters={self.dead_letters} defaulted={self.defaulted}>"
        )
