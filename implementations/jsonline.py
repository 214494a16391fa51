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
    """``events`` as JSON lines, one orjson call for the whole batch where that is safe.

    One call for a list is about ten times cheaper per event than one call per event (each separate
    result is its own allocation), and the driver encodes every event of the run. orjson writes a list of
    objects as ``[{…},{…}]``: every boundary between two events is ``},{``. The same three bytes can also
    appear inside one event (in a string, or a list of objects); then there are more of them than
    boundaries, and the batch is encoded event by event instead.
    """
    if orjson is not None and len(events) > 1 and set(map(type, events)) == {dict}:  # C, not a Python loop
        try:
            inner = orjson.dumps(events)[1:-1]
        except TypeError:
            pass
        else:
            if inner.count(b"},{") == len(events) - 1:
                return inner.replace(b"},{", b"}\n{") + b"\n"
    return b"".join([dumps_line(e) for e in events])


def loads(data: bytes) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:  # NaN or Infinity, which json writes and orjson does not read
            pass
    return json.loads(data)
