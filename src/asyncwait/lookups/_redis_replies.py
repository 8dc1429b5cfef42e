"""How the redis lookup table's rows come back from Redis: the replies, turned into rows.

A row is a hash (field -> value) or a JSON object stored as a string. :class:`Replies`
turns what a command answered (a JSON string, the batch script's one JSON string, a
pipeline's replies) into rows, and a value that is not one into
:class:`~asyncwait.LookupFailedError` naming the Redis key and the table: the stored data
(or the table's ``value`` format) is wrong, not the event, so it is a failed lookup, not
bad input. :data:`HGETALL_MANY`
is the script that reads a batch of hashes in one command.
"""

from __future__ import annotations

from typing import Any, Final, cast, final

from .._codec import loads
from .._reprs import short_repr
from ..errors import LookupFailedError
from ._base import Row

__all__ = ("HGETALL_MANY", "Replies")

# get_many of hashes: HGETALL of every key on the server, answered as ONE JSON string.
# A pipeline of HGETALL is one round trip too, but redis-py parses every field of every
# reply in Python (~35 µs per key); one string and json.loads cost ~4 µs per key
# (bench/kv.py). pcall keeps a key of the wrong type from failing the others: it is
# answered {"err": ...}. An empty table encodes as {} (cjson), which is how a missing key
# (an empty hash) comes back.
HGETALL_MANY: Final = """
local out = {}
for i, key in ipairs(KEYS) do
  local ok, fields = pcall(redis.call, 'HGETALL', key)
  if ok then out[i] = fields else out[i] = {err = tostring(fields.err or fields)} end
end
return cjson.encode(out)
"""


@final
class Replies:
    """Turns one table's replies into rows, naming the table ``name`` in errors.

    Args:
        name: the table's name.
        value_format: ``"hash"`` or ``"json"``, how the table stores rows.
    """

    __slots__ = ("_format", "_name")

    def __init__(self, name: str, value_format: str) -> None:
        self._name = name
        self._format = value_format

    def bad_type(self, redis_key: str, exc: BaseException) -> LookupFailedError:
        """The error of a Redis key holding something else than a row of the table."""
        msg = f"lookup {self._name}: Redis key {redis_key!r} does not hold a {self._format}: {exc}"
        return LookupFailedError(msg, table=self._name)

    def json_row(self, redis_key: str, text: str | bytes) -> Row:
        """The row stored as JSON ``text`` at ``redis_key``."""
        try:
            row = loads(text)
        except ValueError as exc:
            msg = (
                f"lookup {self._name}: the value of Redis key {redis_key!r} is not JSON "
                f"({exc}): {short_repr(text)}"
            )
            raise LookupFailedError(msg, table=self._name) from exc
        if not isinstance(row, dict):
            msg = (
                f"lookup {self._name}: the value of Redis key {redis_key!r} is JSON "
                f"{type(row).__name__}, not an object: {short_repr(text)}"
            )
            raise LookupFailedError(msg, table=self._name)
        return row

    def script_rows(self, redis_keys: list[str], encoded: str) -> list[Row | None]:
        """The hashes at ``redis_keys`` from the answer of :data:`HGETALL_MANY`."""
        rows: list[Row | None] = []
        for rk, reply in zip(redis_keys, loads(encoded), strict=True):
            if isinstance(reply, list):  # HGETALL's flat field, value, field, value, ...
                rows.append(dict(zip(reply[::2], reply[1::2], strict=True)))
            elif reply:  # {"err": ...}: the key holds something else than a hash
                raise self.bad_type(rk, RuntimeError(reply.get("err", reply)))
            else:  # {}: an empty (missing) hash
                rows.append(None)
        return rows

    def pipeline_rows(
        self, redis_keys: list[str], replies: list[Any], response_error: type[BaseException]
    ) -> list[Row | None]:
        """The hashes at ``redis_keys`` from a pipeline's ``HGETALL`` replies.

        Args:
            redis_keys: the keys, in the order of the replies.
            replies: what ``execute(raise_on_error=False)`` answered, errors included.
            response_error: redis-py's ``ResponseError``: a key of the wrong type.
        """
        rows: list[Row | None] = []
        for rk, reply in zip(redis_keys, replies, strict=True):
            if isinstance(reply, response_error):
                raise self.bad_type(rk, reply) from reply
            if isinstance(reply, BaseException):
                # A connection error is raised by execute() itself; anything else here is a
                # failure of this one command that we cannot map to a row.
                raise reply
            rows.append(cast("Row", dict(reply)) if reply else None)
        return rows
