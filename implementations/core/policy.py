"""Celery-style retry policy shared by every backend and by the harness's expectations."""

from __future__ import annotations

import builtins
import functools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFERRAL_ALLOWANCE = 1000  # native tries kept free for circuit-breaker deferrals


class PolicyError(ValueError):
    """A retry policy with values that cannot work."""


def _exc_name(exc: type[BaseException]) -> str:
    return exc.__name__ if exc.__module__ == "builtins" else f"{exc.__module__}.{exc.__qualname__}"


# Exception classes the app's own code declared (docs/security.md): a class given to ``task(autoretry_for=…)``
# or ``RetryPolicy`` as an object lands here, and ``allow_exception`` adds others by hand.
_DECLARED: dict[str, type[BaseException]] = {}


def allow_exception(*classes: type[BaseException]) -> None:
    """Let scenario files and fault plans name these classes (``"myapp.errors.Flaky"``)."""
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise PolicyError(f"allow_exception takes exception classes, got {cls!r}")
        _DECLARED[_exc_name(cls)] = cls


def resolve_exception(name: str) -> type[BaseException]:
    """Turn ``"ConnectionError"`` or ``"package.module.Error"`` into the exception class.

    Scenario files are data: a name resolves against builtins, the classes the app's own code declared
    (``allow_exception``), and modules that are already imported. Nothing is ever imported for a name:
    ``exc = "evilmod.Boom"`` once ran ``evilmod.py`` from the working directory in four processes. The one
    deliberate exception is a scenario that runs a task of the user's own: before its policy is built, the modules
    its exception names live in are imported from that scenario's allowed path only (implementations.api.usercode,
    docs/own-tasks.md), and then resolve here as already imported."""
    exc: object = None
    if not isinstance(name, str) or not name or len(name) > 200:
        raise PolicyError(f"unknown exception class {name!r}")
    if "." not in name:
        exc = getattr(builtins, name, None)
    elif name in _DECLARED:
        exc = _DECLARED[name]
    else:
        import sys

        module, _, attr = name.rpartition(".")
        loaded = sys.modules.get(module)
        exc = getattr(loaded, attr, None) if loaded is not None and attr.isidentifier() else None
    if not (isinstance(exc, type) and issubclass(exc, BaseException)):
        raise PolicyError(f"unknown exception class {name!r}: a scenario may name a builtin exception "
                          "(ConnectionError, TimeoutError, …) or a class its app's own code declared "
                          "(implementations.core.policy.allow_exception); nothing is imported for it "
                          "(a scenario that runs a task of your own may name its module's exceptions: "
                          "docs/own-tasks.md)")
    return exc


def _exc_tuple(value: Any, key: str) -> tuple[type[BaseException], ...]:
    if isinstance(value, (str, type)):
        value = (value,)
    try:
        items = tuple(value)
    except TypeError:
        raise PolicyError(f"{key} must be a list of exception classes, got {value!r}") from None
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(resolve_exception(item))
        elif isinstance(item, type) and issubclass(item, BaseException):
            allow_exception(item)  # declared by code: workers rebuilt from the policy's names find it again
            out.append(item)
        else:
            raise PolicyError(f"{key} must hold exception classes or their names, got {item!r}")
    return tuple(out)


@dataclass(frozen=True)
class RetryPolicy:
    """Celery's retry options, validated, with one pure ``delay`` used by backends and checkers alike.

    ``retry_backoff`` is False (fixed ``default_retry_delay``), True (factor 1) or a factor in seconds;
    ``intervals`` is an explicit RQ-style schedule and wins over backoff when given.
    """

    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    max_retries: int = 3
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600.0
    retry_jitter: bool = False
    default_retry_delay: float = 180.0
    intervals: tuple[float, ...] | None = None
    # Circuit breaker (pybreaker, state shared through Redis): open after this many consecutive
    # retryable failures (0 = no breaker); while open, attempts are deferred, not counted as retries.
    breaker_fail_max: int = 0
    breaker_reset_timeout: float = 60.0
    time_scale: float = 1.0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "autoretry_for", _exc_tuple(self.autoretry_for, "autoretry_for"))
        set_(self, "dont_autoretry_for", _exc_tuple(self.dont_autoretry_for, "dont_autoretry_for"))
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise PolicyError(f"max_retries must be a whole number, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise PolicyError(f"max_retries must be >= 0, got {self.max_retries}")
        backoff = self.retry_backoff
        if not isinstance(backoff, (bool, int, float)) or (not isinstance(backoff, bool) and backoff < 0):
            raise PolicyError(f"retry_backoff must be true, false or a factor >= 0, got {backoff!r}")
        for name in ("retry_backoff_max", "default_retry_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise PolicyError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if isinstance(self.breaker_fail_max, bool) or not isinstance(self.breaker_fail_max, int) \
                or self.breaker_fail_max < 0:
            raise PolicyError("breaker_fail_max must be a whole number >= 0 (0: no breaker), "
                              f"got {self.breaker_fail_max!r}")
        if isinstance(self.breaker_reset_timeout, bool) or not isinstance(self.breaker_reset_timeout, (int, float)) \
                or self.breaker_reset_timeout <= 0:
            raise PolicyError("breaker_reset_timeout must be a number of seconds > 0, "
                              f"got {self.breaker_reset_timeout!r}")
        if not isinstance(self.retry_jitter, bool):
            raise PolicyError(f"retry_jitter must be true or false, got {self.retry_jitter!r}")
        if not isinstance(self.time_scale, (int, float)) or isinstance(self.time_scale, bool) \
                or not 0 < self.time_scale <= 1000:
            raise PolicyError(f"time_scale must be > 0, got {self.time_scale!r}")
        if self.intervals is not None:
            ivals = self.intervals
            if isinstance(ivals, (int, float)):
                ivals = (ivals,)
            try:
                ivals = tuple(float(v) for v in ivals)
            except (TypeError, ValueError):
                raise PolicyError(f"intervals must be a list of seconds, got {self.intervals!r}") from None
            if not ivals or any(v < 0 for v in ivals):
                raise PolicyError(f"intervals must be a non-empty list of seconds >= 0, got {self.intervals!r}")
            set_(self, "intervals", ivals)

    @property
    def native_max_retries(self) -> int:
        """What the library's own retry limit is set to: with a breaker, deferrals consume native tries,
        so the library gets room for them and the shared runtime decides when retries are used up."""
        return self.max_retries + (DEFERRAL_ALLOWANCE if self.breaker_fail_max else 0)

    # -- decisions -------------------------------------------------------------------------------
    def is_retryable(self, exc: BaseException) -> bool:
        """Celery's rule: ``dont_autoretry_for`` wins, then ``autoretry_for`` must match."""
        if self.dont_autoretry_for and isinstance(exc, self.dont_autoretry_for):
            return False
        return bool(self.autoretry_for) and isinstance(exc, self.autoretry_for)

    def will_retry(self, exc: BaseException, retries_done: int) -> bool:
        return self.is_retryable(exc) and retries_done < self.max_retries

    def base_delay(self, retry_number: int) -> float:
        """Unscaled, unjittered delay before retry ``retry_number`` (0 = the first retry)."""
        if retry_number < 0:
            raise PolicyError(f"retry_number must be >= 0, got {retry_number}")
        if self.intervals is not None:
            # Past the end of the list the last interval repeats (the lesson's "10, 30, 60" then 60).
            return self.intervals[min(retry_number, len(self.intervals) - 1)]
        if self.retry_backoff is False:
            return float(self.default_retry_delay)
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        return float(min(self.retry_backoff_max, factor * 2**retry_number))

    def delay(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (0-based), jittered and time-scaled.

        Jitter is Celery's full jitter (uniform in [0, countdown]); pass a seeded ``rng`` to make it
        reproducible — the harness seeds one per job so that expected and configured delays agree.
        """
        countdown = self.base_delay(retry_number)
        if self.retry_jitter:
            countdown = (rng or random.Random()).uniform(0, countdown)
        return countdown * self.time_scale

    def schedule(self, rng: random.Random | None = None) -> list[float]:
        """Every retry's delay for one job, in order: what RQ receives as its interval list."""
        return [self.delay(n, rng) for n in range(self.max_retries)]

    # -- serialisation (policies travel to worker processes as JSON) ------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "autoretry_for": [_exc_name(e) for e in self.autoretry_for],
            "dont_autoretry_for": [_exc_name(e) for e in self.dont_autoretry_for],
            "max_retries": self.max_retries,
            "retry_backoff": self.retry_backoff,
            "retry_backoff_max": self.retry_backoff_max,
            "retry_jitter": self.retry_jitter,
            "default_retry_delay": self.default_retry_delay,
            "intervals": list(self.intervals) if self.intervals is not None else None,
            "breaker_fail_max": self.breaker_fail_max,
            "breaker_reset_timeout": self.breaker_reset_timeout,
            "time_scale": self.time_scale,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        known = {"autoretry_for", "dont_autoretry_for", "max_retries", "retry_backoff", "retry_backoff_max",
                 "retry_jitter", "default_retry_delay", "intervals", "time_scale", "breaker_fail_max",
                 "breaker_reset_timeout"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolicyError(f"unknown policy key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**dict(data))

    def scaled(self, time_scale: float) -> RetryPolicy:
        from dataclasses import replace

        return replace(self, time_scale=time_scale)


def job_rng(seed: int, job_id: str, purpose: str = "jitter") -> random.Random:
    """One reproducible random stream per (seed, job, purpose): same plan on every backend."""
    return random.Random(f"{seed}:{purpose}:{job_id}")


def exc_names(excs: Sequence[type[BaseException]]) -> list[str]:
    return [_exc_name(e) for e in excs]


@functools.lru_cache(maxsize=512)
def _builtin_exc(name: str) -> type | None:
    obj = getattr(builtins, name, None) if "." not in name else None
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None


def _matches(exc_type: str, names: Iterable[str]) -> bool:
    # The policy holds class names, not classes: exact names match, and builtin subclasses match
    # builtin bases (ConnectionRefusedError is an OSError) as ``isinstance`` would in the worker.
    cls = _builtin_exc(exc_type)
    for name in names:
        if name == exc_type or name in ("Exception", "BaseException"):
            return True
        base = _builtin_exc(name)
        if cls is not None and base is not None and issubclass(cls, base):
            return True
    return False


def is_retryable_name(exc_type: str, policy: Mapping[str, Any]) -> bool:
    """``RetryPolicy.is_retryable`` on names, as a history holds them (``policy`` as ``RetryPolicy.to_dict``
    writes it): ``dont_autoretry_for`` wins, then ``autoretry_for`` must match."""
    if _matches(exc_type, policy.get("dont_autoretry_for") or ()):
        return False
    return _matches(exc_type, policy.get("autoretry_for") or ())
