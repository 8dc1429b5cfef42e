"""The parts of :class:`~asyncwait.AsyncWaitOperator` behind its facade (private).

Split as Flink splits its ``AsyncWaitOperator``::

    operator.py      the facade: lifecycle, waiting, snapshot, statistics
    mode.py          OutputMode          options.py   the options, checked once
    statistics.py    OperatorStatistics
    adapter.py       a user function reduced to the calls the operator makes
    admission.py     an element becomes an entry, or passes straight through
    invoker.py       starts calls: the callback form inline, coroutines on workers (the
                     mailbox), driven by hand up to their first suspension
    outcome.py       what happens to an element's call: result, exception, retry, deadline,
                     timeout() hook, failure, settle (Flink's ResultHandler)
    attempts.py      per-attempt deadlines (attempt_timeout)
    policy.py        what a final failure becomes (on_error: fail, skip, dead letter,
                     default)
    emitter.py       emits what the queue lets go and frees slots; pass-through of outputs
                     known at admission

Each part is told what it needs from the others as callables when the facade builds it, so
no part imports another and none reads another's private state.
"""
