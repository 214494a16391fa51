"""A poison payload: an argument that serialises but cannot be deserialised by the worker.

Pickle (RQ, ARQ) stores it as a call to ``_explode``, which raises on loading; JSON (Celery's default
serializer) cannot encode it at all, so the client refuses it at enqueue. Either way no task body ever
sees it, which is what a corrupt or version-skewed message does to a real queue.
"""

from __future__ import annotations

from typing import Any


class PoisonPayload(ValueError):
    """Raised while a worker decodes a poison argument."""


def _explode(index: int) -> Any:
    raise PoisonPayload(f"poison payload #{index}: this argument cannot be decoded")


class Poison:
    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return _explode, (self.index,)

    def __repr__(self) -> str:
        return f"<poison #{self.index}>"
