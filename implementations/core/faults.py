"""Seeded, deterministic fault plans: what should go wrong on each (job, attempt), decided up front.

A plan is data (it travels to workers as JSON); ``FaultPlan.fault_for`` is a pure function of the seed,
the job's plan key and the attempt number — except ``outage``, which is a wall-clock window and is
therefore judged from the recorded attempt times.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

KINDS = ("fail_first", "probability", "permanent", "non_retryable", "outage", "slow", "timeout", "crash")
_DEFAULT_EXC = {"non_retryable": "ValueError", "timeout": "TimeoutError"}
_FIELDS = {
    "fail_first": {"k"},
    "probability": {"p"},
    "permanent": set(),
    "non_retryable": set(),
    "outage": {"start", "duration"},
    "slow": {"ms"},
    "timeout": set(),
    "crash": set(),
}
_COMMON = {"kind", "exc", "fraction", "attempts"}
_OPTIONAL = {"crash": {"target"}}
# What a crash kills: the process running the job (RQ's work horse, a Celery pool child, an ARQ worker),
# or the whole worker with everything it forked, as when its machine or container goes away.
TARGETS = ("process", "worker")


class FaultPlanError(ValueError):
    """A fault plan that cannot be read."""


@dataclass(frozen=True)
class FaultRule:
    kind: str
    exc: str = "ConnectionError"
    fraction: float = 1.0  # share of jobs the rule applies to (picked per job from the seed)
    k: int = 0
    p: float = 0.0
    start: float = 0.0
    duration: float = 0.0
    ms: float = 0.0
    attempts: tuple[int, ...] | None = None  # slow/timeout/crash: which attempts (default: the first)
    target: str = "process"  # crash only: see TARGETS

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "fault") -> FaultRule:
        if not isinstance(data, Mapping):
            raise FaultPlanError(f"{where}: expected a table with a 'kind', got {data!r}")
        kind = data.get("kind")
        if kind not in KINDS:
            raise FaultPlanError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        allowed = _COMMON | _FIELDS[kind] | _OPTIONAL.get(kind, set())
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise FaultPlanError(f"{where}: unknown key(s) {', '.join(unknown)} for kind {kind!r} "
                                 f"(allowed: {', '.join(sorted(allowed))})")
        missing = sorted(_FIELDS[kind] - set(data))
        if missing:
            raise FaultPlanError(f"{where}: kind {kind!r} needs {', '.join(missing)}")
        values = dict(data)
        values.setdefault("exc", _DEFAULT_EXC.get(kind, "ConnectionError"))
        if "attempts" in values and values["attempts"] is not None:
            values["attempts"] = tuple(int(a) for a in values["attempts"])
        rule = cls(**values)
        rule._validate(where)
        return rule

    def _validate(self, where: str) -> None:
        def bad(key: str, expected: str, got: Any) -> FaultPlanError:
            return FaultPlanError(f"{where}.{key}: expected {expected}, got {got!r}")

        if not isinstance(self.exc, str) or not self.exc:
            raise bad("exc", "an exception class name", self.exc)
        if not isinstance(self.fraction, (int, float)) or not 0 <= self.fraction <= 1:
            raise bad("fraction", "a number between 0 and 1", self.fraction)
        if not isinstance(self.k, int) or self.k < 0:
            raise bad("k", "a whole number >= 0", self.k)
        if not isinstance(self.p, (int, float)) or not 0 <= self.p <= 1:
            raise bad("p", "a probability between 0 and 1", self.p)
        if self.target not in TARGETS:
            raise bad("target", " or ".join(TARGETS), self.target)
        for key in ("start", "duration", "ms"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or value < 0:
                raise bad(key, "a number >= 0", value)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "exc": self.exc}
        if self.fraction != 1.0:
            out["fraction"] = self.fraction
        for key in _FIELDS[self.kind]:
            out[key] = getattr(self, key)
        if self.attempts is not None:
            out["attempts"] = list(self.attempts)
        if self.target != "process":
            out["target"] = self.target
        return out


@dataclass(frozen=True)
class Fault:
    """One injected fault: what the task wrapper must do on this attempt."""

    kind: str
    exc: str | None = None
    ms: float = 0.0
    rule: int = 0
    target: str = "process"


@dataclass(frozen=True)
class FaultPlan:
    rules: tuple[FaultRule, ...] = ()
    seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_list(cls, rules: Sequence[Mapping[str, Any]], seed: int = 0, where: str = "faults") -> FaultPlan:
        if not isinstance(rules, Sequence) or isinstance(rules, (str, bytes)):
            raise FaultPlanError(f"{where}: expected a list of fault tables, got {rules!r}")
        return cls(tuple(FaultRule.from_dict(r, f"{where}[{i}]") for i, r in enumerate(rules)), seed)

    def scaled(self, time_scale: float) -> FaultPlan:
        """Outage windows follow ``--time-scale`` like retry delays, so a scaled run keeps its shape."""
        if time_scale == 1:
            return self
        rules = tuple(replace(r, start=r.start * time_scale, duration=r.duration * time_scale)
                      if r.kind == "outage" else r for r in self.rules)
        return FaultPlan(rules, self.seed)

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.rules]

    def _applies(self, index: int, rule: FaultRule, key: str) -> bool:
        if rule.fraction >= 1:
            return True
        return random.Random(f"{self.seed}:select:{index}:{key}").random() < rule.fraction

    def fault_for(self, key: str, attempt: int, *, elapsed_s: float | None = None) -> Fault | None:
        """The fault for attempt ``attempt`` (1-based) of the job with plan key ``key``, if any.

        ``elapsed_s`` is the time since the run's first enqueue; only ``outage`` rules look at it.
        Rules are checked in order and the first that fires wins.
        """
        for index, rule in enumerate(self.rules):
            if not self._applies(index, rule, key):
                continue
            kind = rule.kind
            fires = False
            if kind == "fail_first":
                fires = attempt <= rule.k
            elif kind == "probability":
                fires = random.Random(f"{self.seed}:p:{index}:{key}:{attempt}").random() < rule.p
            elif kind in ("permanent", "non_retryable"):
                fires = True
            elif kind == "outage":
                fires = elapsed_s is not None and rule.start <= elapsed_s < rule.start + rule.duration
            elif kind in ("slow", "timeout", "crash"):
                fires = attempt in (rule.attempts or (1,))
            if fires:
                exc = rule.exc if kind not in ("slow", "crash") else None
                return Fault(kind=kind, exc=exc, ms=rule.ms, rule=index, target=rule.target)
        return None

    @property
    def time_dependent(self) -> bool:
        return any(r.kind == "outage" for r in self.rules)


def plan_key(job_id: str) -> str:
    """The part of a job id that the plan keys on: ids are ``<run id>-<key>`` (RQ allows only letters,
    digits, ``_`` and ``-``), so the same job gets the same faults on every backend and in every run
    with the same seed."""
    return job_id.rsplit("-", 1)[-1]
