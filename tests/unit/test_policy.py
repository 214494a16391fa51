"""RetryPolicy: Celery's option names, validated, with one pure delay function."""

from __future__ import annotations

import random

import pytest

from implementations.core.policy import PolicyError, RetryPolicy
from implementations.runtime.attempt import retry_delay


def test_celery_backoff_formula_is_factor_times_two_to_the_retries_capped() -> None:
    policy = RetryPolicy(autoretry_for=(ConnectionError,), retry_backoff=2, retry_backoff_max=10, max_retries=5)
    assert [policy.delay(n) for n in range(5)] == [2, 4, 8, 10, 10]


def test_retry_backoff_true_means_factor_one() -> None:
    assert RetryPolicy(retry_backoff=True).schedule() == [1, 2, 4]


def test_without_backoff_celery_waits_default_retry_delay() -> None:
    # Celery's autoretry_for without retry_backoff waits default_retry_delay (180 s), not zero.
    assert RetryPolicy().delay(0) == 180


def test_explicit_intervals_win_and_the_last_one_repeats() -> None:
    policy = RetryPolicy(intervals=(10, 30, 60), max_retries=4, retry_backoff=True)
    assert policy.schedule() == [10, 30, 60, 60]


def test_time_scale_shrinks_every_delay() -> None:
    assert RetryPolicy(intervals=(10, 30, 60), time_scale=0.1).schedule() == pytest.approx([1, 3, 6])


def test_full_jitter_stays_within_zero_and_the_countdown_and_is_reproducible() -> None:
    policy = RetryPolicy(retry_backoff=4, retry_jitter=True, max_retries=3)
    draws = [policy.delay(2, random.Random(seed)) for seed in range(200)]
    assert all(0 <= d <= 16 for d in draws)
    assert len(set(draws)) > 100
    assert retry_delay(policy, 7, "run-000003", 1) == retry_delay(policy, 7, "other-000003", 1)
    assert retry_delay(policy, 7, "run-000003", 1) != retry_delay(policy, 8, "run-000003", 1)


def test_dont_autoretry_for_wins_over_autoretry_for() -> None:
    policy = RetryPolicy(autoretry_for=(Exception,), dont_autoretry_for=(ValueError,), max_retries=2)
    assert policy.will_retry(ConnectionError(), 0)
    assert not policy.will_retry(ValueError(), 0)
    assert not policy.will_retry(ConnectionError(), 2)  # retries exhausted


def test_exception_names_resolve_like_classes() -> None:
    policy = RetryPolicy(autoretry_for=["ConnectionError", "socket.timeout"])
    assert ConnectionError in policy.autoretry_for
    assert RetryPolicy.from_dict(policy.to_dict()) == policy


@pytest.mark.parametrize("kwargs, message", [
    ({"max_retries": -1}, "max_retries must be >= 0"),
    ({"max_retries": 1.5}, "max_retries must be a whole number"),
    ({"retry_backoff": -2}, "retry_backoff"),
    ({"retry_backoff_max": -1}, "retry_backoff_max"),
    ({"intervals": [1, -3]}, "intervals"),
    ({"intervals": []}, "intervals"),
    ({"autoretry_for": ["NoSuchError"]}, "unknown exception class"),
    ({"time_scale": 0}, "time_scale"),
    ({"retry_jitter": "yes"}, "retry_jitter"),
    ({"breaker_fail_max": -1}, "breaker_fail_max must be a whole number >= 0"),
    ({"breaker_fail_max": True}, "breaker_fail_max"),
    ({"breaker_reset_timeout": 0}, "breaker_reset_timeout must be a number of seconds > 0"),
])
def test_bad_values_get_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        RetryPolicy(**kwargs)


def test_unknown_keys_in_a_policy_table_are_named() -> None:
    with pytest.raises(PolicyError, match="max_retry"):
        RetryPolicy.from_dict({"max_retry": 3})


def test_a_breaker_leaves_the_policy_its_retries_and_gives_the_library_room_for_deferrals() -> None:
    plain = RetryPolicy(max_retries=3)
    guarded = RetryPolicy(max_retries=3, breaker_fail_max=5, breaker_reset_timeout=2)
    assert plain.native_max_retries == 3
    assert guarded.max_retries == 3 and guarded.native_max_retries > 3
    assert RetryPolicy.from_dict(guarded.to_dict()) == guarded
