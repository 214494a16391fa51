"""JSON lines for the history, with orjson where it is installed (several times faster than json).

Every event is encoded once by the worker that records it and decoded once by the driver that reads
it; at a few events per job this is most of what recording costs in CPU. Anything orjson refuses (an
integer beyond 64 bits, NaN on the way in) goes through json, as everything did before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - every environment retrybench builds installs it
    orjson = None  # type: ignore[assignment]


def dumps_line(obj: Any) -> bytes:
    """``obj`` as one line of JSON, newline included (``default=str`` for anything else)."""
    if orjson is not None:
        try:
            # Plain first: OPT_NON_STR_KEYS and ``default`` cost ~40% more per event, and an event needs
            # them only when it carries a non-string key or an object JSON has no type for.
            return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:
            try:
                return orjson.dumps(obj, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
            except TypeError:
                pass
    return (json.dumps(obj, default=str) + "\n").encode()


def dumps_lines(events: Sequence[dict[str, Any]]) -> bytes:
    """``events`` as JSON lines, one orjson call per event.

    One call for the whole list looks cheaper but is not: turning ``[{…},{…}]`` into lines needs a count
    and a replace of ``},{`` over the result and three copies of it, which cost more instructions than the
    calls they save (callgrind, README "What recording costs").
    """
    if orjson is not None:
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        try:
            return b"".join([dumps(e, option=newline) for e in events])
        except TypeError:
            pass  # an event needs default=str or a non-string key: the batch goes event by event, below
    return b"".join([dumps_line(e) for e in events])


def loads(data: bytes) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:  # NaN or Infinity, which json writes and orjson does not read
            pass
    return json.loads(data)
