"""``python -m harness.bench.usercheck SPEC.json``: can a user task run in this backend's environment?

Run by ``retrybench run`` once per backend environment (and in a fresh interpreter for the in-process
reference backend) after the scenario's requirements are installed and before any worker starts: it imports
the task function, the argument generator and the modules of the policy's and fault plan's exception names
from the allowed path (implementations.api.usercode), makes the first job's arguments and builds the policy.
One line on stdout and exit 2 when anything fails; exit 0 otherwise. Standard library and ``implementations``
only, as the driver.
"""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_BAD = 2


def check(spec: dict[str, Any]) -> str | None:
    """None when the user task of ``spec["scenario"]`` runs here; else the one line that says why not."""
    from harness.plan.scenarios import Scenario
    from implementations.api.tasks import scenario_task
    from implementations.api.usercode import UserCodeError
    from implementations.backends import BackendMissing, require_library
    from implementations.core.config import AppConfig
    from implementations.core.faults import FaultPlan, FaultPlanError
    from implementations.core.policy import PolicyError, RetryPolicy, resolve_exception

    data = spec["scenario"]
    scenario = Scenario(**{**data, "faults": tuple(data.get("faults") or ()),
                           "messages": tuple(data.get("messages") or ())})
    try:
        require_library(spec["backend"])
        config = AppConfig(backend=spec["backend"], task=scenario.task, user_path=scenario.path,
                           policy=dict(scenario.policy), faults=[dict(f) for f in scenario.faults])
        scenario_task(config)
        scenario.job_args(0)
        RetryPolicy.from_dict(dict(scenario.policy))
        for rule in FaultPlan.from_list(list(scenario.faults), seed=scenario.seed).rules:
            if rule.kind not in ("slow", "crash") and rule.exc:
                resolve_exception(rule.exc)
    except (UserCodeError, BackendMissing) as exc:
        return str(exc)
    except (PolicyError, FaultPlanError) as exc:
        return f"policy or faults: {exc}"
    except Exception as exc:  # noqa: BLE001 - the user's argument generator raised: one line, not a traceback
        return f"args {scenario.args!r}: {type(exc).__name__}: {exc}"
    return None


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: python -m harness.bench.usercheck SPEC.json", file=sys.stderr)
        sys.exit(EXIT_BAD)
    with open(sys.argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    problem = check(spec)
    if problem:
        print(" ".join(problem.split()), flush=True)
        sys.exit(EXIT_BAD)


if __name__ == "__main__":
    main()
