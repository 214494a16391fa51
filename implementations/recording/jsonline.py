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


SMALL_BATCH = 16  # a worker's write (1-4 events): one join of the encoded lines is cheapest


def dumps_lines(events: Sequence[dict[str, Any]]) -> bytes | bytearray:
    """``events`` as JSON lines, one orjson call per event.

    A large batch (the driver's drain) is gathered in one ``bytearray``, each line let go as soon as it is
    copied in. Keeping every encoded line alive until a final join cost 3-8 µs an event instead of 0.5:
    the page faults of a fresh allocation per line (``ru_minflt``), which instruction counts never show.
    One orjson call for the whole list does not help either: splitting ``[{…},{…}]`` into lines takes a
    scan and copies that cost more than the calls they save (callgrind).
    """
    if orjson is not None:
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        try:
            if len(events) <= SMALL_BATCH:
                return b"".join([dumps(e, option=newline) for e in events])
            buf = bytearray()
            for e in events:
                buf += dumps(e, option=newline)
            return buf
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
