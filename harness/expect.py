"""What the seeded plan says must happen to each job, computed before the run (Jepsen's model)."""

from __future__ import annotations

from typing import Any

from implementations.faults import FaultPlan, plan_key
from implementations.policy import RetryPolicy, resolve_exception
from implementations.runtime import retry_delay

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
