"""Scenarios: built-in presets and user TOML files with the same keys, validated with clear errors."""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.plan.options import KNOWN_OPTIONS, ScenarioError, check_options
from implementations.api.tasks import TASKS
from implementations.api.usercode import (
    UserCodeError,
    find,
    is_ref,
    load_function,
    normalize_args,
    split_ref,
)
from implementations.core.config import SCHEDULES
from implementations.core.faults import FaultPlan, FaultPlanError
from implementations.core.poison import Poison
from implementations.core.policy import PolicyError, RetryPolicy, resolve_exception


@dataclass(frozen=True)
class Scenario:
    """One failing-task workload: task, retry policy, fault plan, size and pacing."""

    name: str
    description: str = ""
    task: str = "work"
    policy: Mapping[str, Any] = field(default_factory=dict)
    faults: tuple[Mapping[str, Any], ...] = ()
    jobs: int = 20
    workers: int = 2
    concurrency: int = 4  # slots per worker: RQ work processes, ARQ max_jobs, Celery pool size
    seed: int = 42
    time_scale: float = 1.0
    enqueue_rate: float = 0.0  # jobs per second; 0 = all at once
    tolerance_s: float = 0.002  # a retry earlier than this before its delay is a violation
    late_budget_s: float | None = None  # a retry later than this after its delay fails (None: 0.1 s + 10 % of it)
    # Where that lateness is counted from: "due" (the delay being up) or "turn" (the later of that and the start
    # of the work that was due before it: a retry waits its turn by design; harness.analysis.turns).
    late_from: str = "due"
    messages: tuple[str, ...] = ()  # process_message: cycled through as the jobs' arguments
    work_ms: float = 0.0
    task_options: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    poison: float = 0.0  # share of jobs whose argument cannot be serialised or deserialised
    # Who decides each retry's delay: "planned" (retrybench's seeded plan, the same on every backend) or
    # "native" (each library from the policy as its own users write it; docs/schedules.md).
    schedule: str = "planned"
    sweep: Mapping[str, Any] = field(default_factory=dict)  # setting -> values to try (see harness.plan.sweep)
    sweep_of: str = ""  # set on the variants a sweep expands into: the swept scenario's name …
    sweep_values: Mapping[str, Any] = field(default_factory=dict)  # … and this variant's settings
    # A user task ("module:function", docs/own-tasks.md): each job's arguments (a list, one entry per job, cycled;
    # or "module:function" called with the job index and the seed), a requirements file installed into every
    # backend's environment, and the one directory its modules are imported from (the scenario file's, or --path).
    args: Any = None
    requirements: str = ""
    path: str = ""
    # The fault plan's network component (harness/plan/netfaults.py): partitions, latency, dropped connections
    # between a worker host and the broker; needs simulated hosts (``--hosts N``, docs/multi-host.md).
    network: tuple[Mapping[str, Any], ...] = ()

    @property
    def user_task(self) -> bool:
        return is_ref(self.task)

    def is_poison(self, index: int) -> bool:
        return bool(self.poison) and random.Random(f"{self.seed}:poison:{index}").random() < self.poison

    def job_args(self, index: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.is_poison(index):
            return (Poison(index),), {}
        if self.user_task:
            return self.user_args(index)
        if self.task == "process_message":
            return (self.messages[index % len(self.messages)] if self.messages else f"message {index}",), {}
        return (index,), ({"work_ms": self.work_ms} if self.work_ms else {})

    def user_args(self, index: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Job ``index``'s arguments for a user task: from the list (cycled), from the generator function called
        with the index and the seed (imported from the allowed path: run where the task runs), else ``(index,)``."""
        if isinstance(self.args, list) and self.args:
            return normalize_args(self.args[index % len(self.args)], f"args[{index % len(self.args)}]")
        if is_ref(self.args):
            make = load_function(self.args, self.path, "args")
            return normalize_args(make(index, self.seed), f"args {self.args!r} for job {index}")
        return (index,), {}

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy.from_dict(self.policy).scaled(self.time_scale)

    def fault_plan(self) -> FaultPlan:
        return FaultPlan.from_list(list(self.faults), seed=self.seed).scaled(self.time_scale)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["faults"] = [dict(f) for f in self.faults]
        data["messages"] = list(self.messages)
        if not self.user_task:  # results of built-in scenarios keep their shape
            for key in ("args", "requirements", "path"):
                data.pop(key)
        data["network"] = [dict(f) for f in self.network]
        if not self.network:
            data.pop("network")
        return data


# A scenario file without a [policy]: ConnectionError retried, ValueError never (the presets build on it too).
DEFAULT_POLICY = {"autoretry_for": ["ConnectionError"], "dont_autoretry_for": ["ValueError"]}

_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "description": (str,), "task": (str,), "jobs": (int,), "workers": (int,),
    "concurrency": (int,), "seed": (int,), "time_scale": (int, float), "enqueue_rate": (int, float),
    "tolerance_s": (int, float), "late_budget_s": (int, float), "late_from": (str,), "messages": (list,),
    "work_ms": (int, float), "policy": (dict,),
    "faults": (list,), "task_options": (dict,), "options": (dict,), "poison": (int, float), "sweep": (dict,),
    "schedule": (str,), "args": (list, str), "requirements": (str,), "network": (list,),
}


# Scenario names become file names (plots) and titles (matplotlib): no path, no control character, no
# mathtext. Sweep variants add "[key=value]" to a checked name.
_UNSAFE_NAME = re.compile(r"[/\\$\x00-\x1f\x7f]")


def check_name(name: str, where: str) -> None:
    if not name or len(name) > 100 or _UNSAFE_NAME.search(name) or ".." in name or name.startswith("."):
        raise ScenarioError(f"{where}: name {name!r}: a scenario name becomes a file name: use up to 100 "
                            "characters without '/', '\\', '..', '$', a leading '.' or control characters")


SIZES = ("jobs", "workers", "concurrency")  # the workload's sizes a sweep may vary
LATE_FROM = ("due", "turn")  # where a retry's lateness counts from (Scenario.late_from)


def check_sweep(sweep: Mapping[str, Any], where: str) -> None:
    for key, values in sweep.items():
        if key not in SIZES and key not in KNOWN_OPTIONS:
            raise ScenarioError(f"{where}: sweep: {key!r} is neither a size ({', '.join(SIZES)}) nor a known option")
        if not isinstance(values, list) or not values:
            raise ScenarioError(f"{where}: sweep.{key}: expected a non-empty list of values, got {values!r}")
        if key in SIZES and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
            raise ScenarioError(f"{where}: sweep.{key}: expected whole numbers >= 1, got {values!r}")


def validate(s: Scenario, where: str) -> Scenario:
    """Check every value a run depends on; errors name the place and what was expected."""
    if not s.sweep_of:
        check_name(s.name, where)
    check_options(s.options, where)
    if s.sweep:
        check_sweep(s.sweep, where)
    for key in ("jobs", "workers", "concurrency"):
        if getattr(s, key) < 1:
            raise ScenarioError(f"{where}: {key}: expected a whole number >= 1, got {getattr(s, key)}")
    if not 0 <= s.poison <= 1:
        raise ScenarioError(f"{where}: poison: expected a share of jobs between 0 and 1, got {s.poison}")
    if s.enqueue_rate < 0 or s.tolerance_s < 0 or s.work_ms < 0:
        raise ScenarioError(f"{where}: enqueue_rate, tolerance_s and work_ms must be >= 0")
    if s.late_budget_s is not None and s.late_budget_s <= 0:
        raise ScenarioError(f"{where}: late_budget_s must be a number > 0, got {s.late_budget_s!r}")
    if s.late_from not in LATE_FROM:
        raise ScenarioError(f"{where}: late_from: expected 'due' or 'turn', got {s.late_from!r}")
    if s.schedule not in SCHEDULES:
        raise ScenarioError(f"{where}: schedule: expected {' or '.join(repr(m) for m in SCHEDULES)}, "
                            f"got {s.schedule!r}")
    if s.user_task:
        check_user_task(s, where)
    elif s.task not in TASKS:
        raise ScenarioError(f"{where}: task: expected one of {', '.join(TASKS)} or a function of your own as "
                            f"'module:function', got {s.task!r}")
    elif s.args is not None or s.requirements:
        raise ScenarioError(f"{where}: args and requirements are for a task of your own ('module:function')")
    try:
        _policy_to_check(s)
    except PolicyError as exc:
        raise ScenarioError(f"{where}: policy: {exc}") from None
    try:
        plan = s.fault_plan()
    except FaultPlanError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if s.network:
        from harness.plan.netfaults import NetFaultError, parse_network

        try:
            parse_network(list(s.network))
        except NetFaultError as exc:
            raise ScenarioError(f"{where}: {exc}") from None
    for i, rule in enumerate(plan.rules):
        # A user task's dotted names are its modules' or its requirements': resolved where its code is imported
        # (harness.bench.usercheck, in each backend's environment), never imported here.
        if rule.kind not in ("slow", "crash") and not (s.user_task and "." in rule.exc):
            try:
                resolve_exception(rule.exc)
            except PolicyError as exc:
                raise ScenarioError(f"{where}: faults[{i}].exc: {exc}") from None
    return s


def check_user_task(s: Scenario, where: str) -> None:
    """What the main environment can check of a user task without running its code: the names' form, the
    module files in the allowed path, the argument list, the requirements file. Importing it (does the function
    exist, does it import in each backend's environment) is ``harness.bench.usercheck``'s, before any worker starts."""
    if not s.path:
        raise ScenarioError(f"{where}: task {s.task!r}: no allowed path to import it from (use a scenario file, or "
                            "--path DIR)")
    try:
        for ref, what in ((s.task, "task"), (s.args, "args")):
            if is_ref(ref):
                module, _ = split_ref(str(ref), what)
                find(module, s.path)
            elif what == "args" and isinstance(ref, str):
                raise UserCodeError(f"args {ref!r}: expected a list or 'module:function'")
    except UserCodeError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if isinstance(s.args, list) and not s.args:
        raise ScenarioError(f"{where}: args: an empty list gives the jobs no arguments (leave it out for (index,))")
    if s.requirements and not Path(s.requirements).is_file():
        raise ScenarioError(f"{where}: requirements: no such file {s.requirements}")


def _policy_to_check(s: Scenario) -> None:
    """Check the policy in the main environment. A user task's dotted exception names are checked where its code
    is imported (harness.bench.usercheck, in each backend's environment), not here."""
    policy = dict(s.policy)
    if s.user_task:
        # Dotted names (charges.CardDeclined, httpx.TransportError) live in the task's modules or its
        # requirements, which the main environment neither has nor imports.
        for key in ("autoretry_for", "dont_autoretry_for"):
            value = policy.get(key)
            items = [value] if isinstance(value, str) else list(value) if isinstance(value, list) else None
            if items is not None:
                policy[key] = [n for n in items if not (isinstance(n, str) and "." in n)]
    RetryPolicy.from_dict(policy).scaled(s.time_scale)


def from_mapping(data: Mapping[str, Any], where: str, *, base: Path | None = None,
                 path: str | None = None) -> Scenario:
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_TYPES))})")
    values: dict[str, Any] = {}
    for key, value in data.items():
        types = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join("number" if t is float else t.__name__.replace("dict", "table") for t in types)
            raise ScenarioError(f"{where}: {key}: expected {names}, got {value!r}")
        values[key] = value
    values.setdefault("name", Path(where).stem)
    values["faults"] = tuple(values.get("faults", ()))
    values["messages"] = tuple(values.get("messages", ()))
    values["network"] = tuple(values.get("network", ()))
    values.setdefault("policy", dict(DEFAULT_POLICY))
    if base is not None:  # a scenario file: user code and its requirements live beside it (or in --path)
        values["path"] = str(Path(path or base).resolve())
        if values.get("requirements"):
            values["requirements"] = str((base / values["requirements"]).resolve())
    return validate(Scenario(**values), where)


def load_file(path: str | Path, *, user_path: str | None = None) -> Scenario:
    # Imported here: worker-side drivers import this module in backend envs that lack tomli on 3.10.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return from_mapping(data, str(path), base=path.resolve().parent, path=user_path)


def with_overrides(s: Scenario, **overrides: Any) -> Scenario:
    given = {k: v for k, v in overrides.items() if v is not None}
    return validate(replace(s, **given), f"scenario {s.name}") if given else s
