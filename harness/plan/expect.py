"""What the seeded plan says must happen to each job, computed before the run (Jepsen's model)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from implementations.core.faults import FaultPlan, plan_key
from implementations.core.policy import RetryPolicy, resolve_exception
from implementations.runtime.attempt import retry_delay

if TYPE_CHECKING:
    from harness.plan.scenarios import Scenario

# Faults whose outcome depends on the backend's recovery or on wall-clock time, not on the plan alone.
_UNPREDICTABLE = {"crash", "timeout", "outage"}


def body_exception(task: str, args: tuple[Any, ...]) -> str | None:
    """The exception the task body itself raises for these arguments (bodies are deterministic)."""
    if task == "process_message":
        message = args[0] if args else ""
        if not message:
            return "ValueError"
        if "retry" in message:
            return "ConnectionError"
    return None


def predict(policy: RetryPolicy, plan: FaultPlan, *, seed: int, job_id: str, task: str,
            args: tuple[Any, ...]) -> dict[str, Any] | None:
    """Final state, number of attempts and every retry delay for one job; None when unpredictable."""
    if any(rule.kind in _UNPREDICTABLE for rule in plan.rules):
        return None
    key = plan_key(job_id)
    delays: list[float] = []
    attempt = 1
    while True:
        fault = plan.fault_for(key, attempt)
        exc = fault.exc if fault is not None and fault.kind != "slow" else body_exception(task, args)
        if exc is None:
            return {"state": "success", "attempts": attempt, "delays": delays}
        if not policy.will_retry(resolve_exception(exc)("predicted"), attempt - 1):
            return {"state": "failure", "attempts": attempt, "delays": delays, "exc_type": exc}
        delays.append(retry_delay(policy, seed, job_id, attempt - 1))
        attempt += 1


def job_id_for(cell_id: str, index: int) -> str:
    """The id the driver gives job ``index`` of a cell: ``<cell id>-<index>``, the plan key after the dash."""
    return f"{cell_id}-{index:06d}"


def expectations(scenario: Scenario, cell_id: str) -> list[dict[str, Any] | None]:
    """What the plan says of every job of one cell, in enqueue order, worked out before the clock starts
    (the enqueue loop only looks it up). Jobs that expect the same share one dict: 100,000 jobs that all
    succeed on their first try cost one."""
    if scenario.user_task:
        # The user's own task fails as it will: nothing predicts its outcome, so no job has an expectation
        # ("not planned"; poison payloads are still the scenario's own and known).
        return [{"state": "poison"} if scenario.is_poison(i) else None for i in range(scenario.jobs)]
    policy, plan = scenario.retry_policy(), scenario.fault_plan()
    shared: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any] | None] = []
    for index in range(scenario.jobs):
        args, _ = scenario.job_args(index)
        found = ({"state": "poison"} if scenario.is_poison(index) else
                 predict(policy, plan, seed=scenario.seed, job_id=job_id_for(cell_id, index), task=scenario.task,
                         args=args))
        out.append(None if found is None else shared.setdefault(repr(found), found))
    return out
