"""Backend names → classes, imported lazily: each library lives in its own virtualenv."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Backend

BACKENDS = {
    "reference": "implementations.reference.backend:ReferenceBackend",
    "rq": "implementations.rq_backend.backend:RQBackend",
    "arq": "implementations.arq_backend.backend:ARQBackend",
    "celery": "implementations.celery_backend.backend:CeleryBackend",
}

# Control rows: shown beside the libraries for scale, never ranked against them.
CONTROLS = frozenset({"reference"})


def is_control(label: str) -> bool:
    """Whether a backend label (``reference``, ``rq``, ``celery==5.6.*``, ``arq[…]``) names a control."""
    return label.split("==")[0].split("[")[0].split(" ")[0] in CONTROLS


class UnknownBackend(ValueError):
    """A backend name retrybench does not know."""


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise UnknownBackend(f"unknown backend {name!r} (choose from: {', '.join(BACKENDS)})")


def load_backend(name: str) -> type[Backend]:
    check_backend(name)
    module, _, attr = BACKENDS[name].partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module), attr)
    return cls
