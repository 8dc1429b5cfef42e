"""The ``asyncwait`` command: run, validate and demo job files.

::

    asyncwait run JOB.toml [--fresh] [--quiet] [--json-summary FILE] [--max-errors N]
    asyncwait validate JOB.toml
    asyncwait demo [--events N] [--users M] [--dir DIR] [--mode MODE] [--capacity C]
                   [--latency-ms MS] [--no-cache] [--quiet] [--json-summary FILE] [--seed S]

Exit status: 0 success, 1 the job failed, 2 a bad command line or job file. Errors are one
line on stderr (``error: ...``) naming the file, field, operator or element; ``--debug``
adds the traceback. Progress and the final summary go to stderr, so a ``stdout`` sink stays
clean. ``run`` and ``demo`` need rich (``pip install 'asyncwait[cli]'``).
"""

from .main import main as main

__all__ = ("main",)
