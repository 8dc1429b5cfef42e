"""Checks shared by the property tests: what a legal output stream looks like per mode."""

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from asyncwait import OutputMode, StreamElement, Watermark


def check_order(
    mode: OutputMode,
    inputs: Sequence[StreamElement],
    outputs: Sequence[StreamElement],
    key_of: Callable[[StreamElement], Any],
    *,
    complete: bool,
) -> None:
    """Assert that ``outputs`` (one per input) is a legal emission of ``inputs`` for ``mode``.

    With ``complete=False``, ``outputs`` may be a prefix of a legal emission.
    """
    assert len(set(outputs)) == len(outputs), "an element was emitted twice"
    assert Counter(outputs) <= Counter(inputs), "an output matches no input"
    if complete:
        assert Counter(outputs) == Counter(inputs), "an input was lost"
    if mode is OutputMode.ORDERED:
        assert list(outputs) == list(inputs[: len(outputs)])
        return
    # Never across a watermark: every element is emitted after every watermark before it,
    # and every watermark after every element before it.
    position = {element: i for i, element in enumerate(inputs)}
    watermarks_in = [e for e in inputs if isinstance(e, Watermark)]
    watermarks_out = [e for e in outputs if isinstance(e, Watermark)]
    assert watermarks_out == watermarks_in[: len(watermarks_out)]
    emitted_watermarks = 0
    for element in outputs:
        if isinstance(element, Watermark):
            emitted_watermarks += 1
            ahead = inputs[: position[element]]
            assert set(ahead) <= set(outputs[: outputs.index(element)]), (
                f"{element} overtook an element before it"
            )
        else:
            before = sum(1 for w in watermarks_in if position[w] < position[element])
            assert before == emitted_watermarks, f"{element} crossed a watermark"
    if mode is OutputMode.KEY_ORDERED:
        for key in {key_of(e) for e in inputs if not isinstance(e, Watermark)}:
            ins = [e for e in inputs if not isinstance(e, Watermark) and key_of(e) == key]
            outs = [e for e in outputs if not isinstance(e, Watermark) and key_of(e) == key]
            assert outs == ins[: len(outs)], f"key {key!r} left input order"
