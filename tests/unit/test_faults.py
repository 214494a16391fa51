"""Fault plans are seeded and decided per (job, attempt): the same on every backend and every run."""

from __future__ import annotations

import pytest

from harness.plan.expect import predict
from implementations.core.faults import FaultPlan, FaultPlanError, plan_key
from implementations.core.policy import RetryPolicy

POLICY = RetryPolicy(autoretry_for=(ConnectionError,), dont_autoretry_for=(ValueError,), max_retries=3,
                     intervals=(1, 2, 3))


def test_fail_first_k_fails_exactly_the_first_k_attempts() -> None:
    plan = FaultPlan.from_list([{"kind": "fail_first", "k": 2}])
    kinds = [plan.fault_for("000001", attempt) for attempt in (1, 2, 3)]
    assert [f.kind if f else None for f in kinds] == ["fail_first", "fail_first", None]
    assert kinds[0] is not None and kinds[0].exc == "ConnectionError"


def test_probability_is_deterministic_for_a_seed_and_close_to_p() -> None:
    plan = FaultPlan.from_list([{"kind": "probability", "p": 0.2}], seed=3)
    draws = [plan.fault_for(f"{i:06d}", 1) is not None for i in range(5000)]
    assert draws == [plan.fault_for(f"{i:06d}", 1) is not None for i in range(5000)]
    assert 0.17 < sum(draws) / len(draws) < 0.23
    other = FaultPlan.from_list([{"kind": "probability", "p": 0.2}], seed=4)
    assert draws != [other.fault_for(f"{i:06d}", 1) is not None for i in range(5000)]


def test_outage_fails_only_inside_its_window() -> None:
    plan = FaultPlan.from_list([{"kind": "outage", "start": 1, "duration": 2}])
    assert plan.fault_for("000001", 1, elapsed_s=0.5) is None
    assert plan.fault_for("000001", 1, elapsed_s=1.0) is not None
    assert plan.fault_for("000001", 1, elapsed_s=3.0) is None
    assert plan.time_dependent


def test_plan_key_is_the_job_index_so_backends_share_one_plan() -> None:
    assert plan_key("abc123x4-000042") == "000042"


def test_prediction_follows_the_policy() -> None:
    # Given three transient failures and three retries allowed
    plan = FaultPlan.from_list([{"kind": "fail_first", "k": 3}])
    # Then the job succeeds on its fourth attempt after waiting 1, 2 and 3 s
    expected = predict(POLICY, plan, seed=0, job_id="r-000001", task="work", args=(1,))
    assert expected == {"state": "success", "attempts": 4, "delays": [1, 2, 3]}


def test_prediction_of_a_non_retryable_error_is_one_attempt_and_failure() -> None:
    plan = FaultPlan.from_list([{"kind": "non_retryable"}])
    expected = predict(POLICY, plan, seed=0, job_id="r-000001", task="work", args=(1,))
    assert expected is not None and (expected["state"], expected["attempts"]) == ("failure", 1)


def test_prediction_of_the_lesson_task_reads_its_message() -> None:
    plan = FaultPlan()
    assert predict(POLICY, plan, seed=0, job_id="r-1", task="process_message", args=("",))["attempts"] == 1
    retry = predict(POLICY, plan, seed=0, job_id="r-1", task="process_message", args=("please retry",))
    assert retry == {"state": "failure", "attempts": 4, "delays": [1, 2, 3], "exc_type": "ConnectionError"}


def test_time_dependent_faults_are_not_predicted() -> None:
    plan = FaultPlan.from_list([{"kind": "outage", "start": 0, "duration": 1}])
    assert predict(POLICY, plan, seed=0, job_id="r-1", task="work", args=()) is None


@pytest.mark.parametrize("rules, message", [
    ([{"kind": "explode"}], "kind: expected one of"),
    ([{"kind": "fail_first"}], "needs k"),
    ([{"kind": "probability", "p": 2}], "p: expected a probability"),
    ([{"kind": "slow", "ms": 5, "colour": "red"}], "unknown key"),
    ("fail", "expected a list"),
])
def test_malformed_plans_name_the_rule_and_key(rules: object, message: str) -> None:
    with pytest.raises(FaultPlanError, match=message):
        FaultPlan.from_list(rules)  # type: ignore[arg-type]


def test_time_scale_shrinks_outage_windows_like_delays() -> None:
    plan = FaultPlan.from_list([{"kind": "outage", "start": 10, "duration": 20}], seed=1).scaled(0.1)
    assert plan.fault_for("000001", 1, elapsed_s=0.5) is None
    assert plan.fault_for("000001", 1, elapsed_s=1.5) is not None
    assert plan.fault_for("000001", 1, elapsed_s=3.5) is None


def test_a_cells_expectations_are_worked_out_up_front_in_enqueue_order_and_shared_where_equal() -> None:
    from dataclasses import replace

    from harness.plan.expect import expectations, job_id_for
    from harness.plan.presets import PRESETS

    # Given 200 jobs of the flaky preset, a tenth of them poison
    scenario = replace(PRESETS["flaky-20"], jobs=200, poison=0.1)
    # When the cell's expectations are worked out before the run
    found = expectations(scenario, "cell1")
    # Then job i's is the prediction for job i's own id, and a poison job's says so
    policy, plan = scenario.retry_policy(), scenario.fault_plan()
    for i in (0, 7, 199):
        want = ({"state": "poison"} if scenario.is_poison(i) else
                predict(policy, plan, seed=scenario.seed, job_id=job_id_for("cell1", i), task=scenario.task,
                        args=scenario.job_args(i)[0]))
        assert found[i] == want
    assert len(found) == 200 and 0 < sum(e == {"state": "poison"} for e in found) < 200
    # And equal expectations are one object (100,000 jobs that all succeed at once cost one dict)
    assert len({id(e) for e in found}) == len({repr(e) for e in found}) < 200
