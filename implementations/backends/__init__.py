"""The one registry of backends: every place that needs the list of backends, or a fact about one, reads it here.

A backend is one folder under ``implementations/`` plus one ``Registered`` entry: where its class is (imported
lazily: each library lives in its own virtualenv), what pip installs for it, which library versions a result
records, its colour in plots, and whether it is the in-process control (no environment, no broker, never
ranked). This module imports no queue library, so the harness's main environment can read it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from implementations.backends.base import Backend


@dataclass(frozen=True)
class Registered:
    """One backend as the harness knows it."""

    name: str
    target: str  # "module:Class" of its Backend subclass
    distribution: str | None  # what pip installs (None: in-process, no environment of its own)
    recorded: tuple[str, ...] = ()  # the libraries whose versions a result records
    color: str = "#8c564b"  # in every plot
    control: bool = False  # shown for scale beside the libraries, never ranked against them
    counting: str = ""  # how the library counts retries, and what retrybench passes it so every backend runs as often
    poison: str = "poison_failed_natively"  # the summary count a poison job ends in, as the library handles it
    lacks: tuple[tuple[str, str], ...] = ()  # (capability, why the library has none): what tests skip, and why

    def lacking(self, capability: str) -> str | None:
        """Why the library lacks ``capability`` (e.g. ``crash_recovery``), or None when it has it."""
        return dict(self.lacks).get(capability)

    @property
    def in_process(self) -> bool:
        """Runs in the driver's own interpreter (threads), with no environment, workers or broker of its own."""
        return self.distribution is None


REGISTRY: dict[str, Registered] = {r.name: r for r in (
    Registered("reference", "implementations.backends.reference.backend:ReferenceBackend", None, color="#7f7f7f",
               control=True, counting="max_retries=N: N retries after the first run", poison="poison_recorded"),
    Registered("rq", "implementations.backends.rq_backend.backend:RQBackend", "rq", ("rq", "redis"), "#d62728",
               counting="Retry(max=N) counts retries: N + 1 runs; given max=max_retries"),
    Registered("arq", "implementations.backends.arq_backend.backend:ARQBackend", "arq", ("arq", "redis", "hiredis"),
               "#1f77b4", counting="max_tries counts runs, the first included: given max_tries=max_retries + 1"),
    Registered("celery", "implementations.backends.celery_backend.backend:CeleryBackend", "celery[redis]",
               ("celery", "kombu", "redis"), "#2ca02c",
               counting="max_retries=N counts retries: N + 1 runs; given max_retries=max_retries",
               poison="poison_refused"),
    Registered("dramatiq", "implementations.backends.dramatiq_backend.backend:DramatiqBackend",
               "dramatiq[redis,rabbitmq]",
               ("dramatiq", "redis", "pika"), "#9467bd",
               counting="max_retries=N counts retries (default 20; fails once retries >= N): N + 1 runs; "
                        "given max_retries=max_retries", poison="poison_refused"),
    Registered("taskiq", "implementations.backends.taskiq_backend.backend:TaskiqBackend", "taskiq-redis",
               ("taskiq", "taskiq-redis", "redis"), "#e377c2",
               counting="the max_retries label counts runs, the first included (re-sent while _retries + 1 < "
                        "max_retries): given max_retries=max_retries + 1", poison="poison_refused"),
    Registered("saq", "implementations.backends.saq_backend.backend:SAQBackend", "saq[redis,hiredis]",
               ("saq", "redis", "hiredis"), "#bcbd22",
               counting="Job.retries counts runs, the first included (retryable while retries > attempts): "
                        "given retries=max_retries + 1", poison="poison_refused"),
    Registered("huey", "implementations.backends.huey_backend.backend:HueyBackend", "huey", ("huey", "redis"),
               "#17becf",
               counting="retries=N counts retries left (one off per retry; RetryTask takes none): N + 1 runs; "
                        "given retries=max_retries",
               # Worker.loop logs 'Error reading from queue' and drops a message it cannot unpickle.
               poison="poison_unaccounted",
               lacks=(("crash_recovery", "Huey's RedisStorage.dequeue is a BRPOP: the pop is the acknowledgement, "
                                         "and no setting brings back a message whose consumer was SIGKILLed"),)),
)}
BACKENDS = {name: r.target for name, r in REGISTRY.items()}
QUEUES = tuple(name for name, r in REGISTRY.items() if not r.in_process)  # the libraries, each in its own env
ALL_BACKENDS = list(REGISTRY)  # every backend, the control first


class UnknownBackend(ValueError):
    """A backend name retrybench does not know."""


def base_name(label: str) -> str:
    """``celery==5.6.*`` → ``celery``; ``rq[SimpleWorker]`` → ``rq``."""
    return label.split("==")[0].split("[")[0].split(" ")[0].strip()


def is_control(label: str) -> bool:
    """Whether a backend label (``reference``, ``rq``, ``celery==5.6.*``, ``arq[…]``) names a control."""
    found = REGISTRY.get(base_name(label))
    return bool(found and found.control)


def is_in_process(label: str) -> bool:
    found = REGISTRY.get(base_name(label))
    return bool(found and found.in_process)


def check_backend(name: str) -> None:
    if name not in REGISTRY:
        raise UnknownBackend(f"unknown backend {name!r} (choose from: {', '.join(REGISTRY)})")


class BackendMissing(ImportError):
    """The backend's library is not installed in this interpreter (each lives in its own environment)."""


def library_module(name: str) -> str | None:
    """The top-level module of a backend's library (``celery[redis]`` → ``celery``); None in-process."""
    dist = REGISTRY[name].distribution
    return dist.split("[")[0].replace("-", "_") if dist else None


def missing_library(name: str) -> str:
    import sys

    return (f"the {name} backend needs the {library_module(name)} library, which this interpreter "
            f"({sys.executable}) does not have: each backend lives in its own environment under .venvs/. "
            f"Run your code there with `retrybench exec -b {name} -- python script.py`, or open "
            f"`retrybench shell -b {name}` (docs/own-tasks.md)")


def require_library(name: str) -> None:
    """BackendMissing, naming the commands that run code in the backend's environment, when the library of
    backend ``name`` cannot be imported here."""
    import importlib.util

    check_backend(name)
    module = library_module(name)
    if module is not None and importlib.util.find_spec(module) is None:
        raise BackendMissing(missing_library(name), name=module)


def load_backend(name: str) -> type[Backend]:
    require_library(name)
    module, _, attr = REGISTRY[name].target.partition(":")
    try:
        cls: type[Backend] = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == library_module(name):
            raise BackendMissing(missing_library(name), name=exc.name) from None
        raise
    return cls
