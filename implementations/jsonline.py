"""JSON lines for the history, with orjson where it is installed (several times faster than json).

Every event is encoded once by the worker that records it and decoded once by the driver that reads
it; at a few events per job this is most of what recording costs in CPU. Anything orjson refuses (an
integer beyond 64 bits, NaN on the way in) goes through json, as everything did before.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - every environment retrybench builds installs it
    orjson = None  # type: ignore[assignment]


def dumps_line(obj: Any) -> bytes:
    """``obj`` as one line of JSON, newline included (``default=str`` for anything else)."""
    if orjson is not None:
        try:
            return orjson.dumps(obj, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
        except TypeError:
            pass
    return (json.dumps(obj, default=str) + "\n").encode()


def loads(data: bytes) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:  # NaN or Infinity, which json writes and orjson does not read
            pass
    return json.loads(data)
