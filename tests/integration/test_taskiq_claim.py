"""taskiq: one send per due schedule with a scheduler loop in every worker (ClaimingScheduleSource's veto),
run inside taskiq's own environment on a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest

from harness.orchestrate.envs import BackendEnv

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent.parent

SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    from taskiq import InMemoryBroker, ScheduledTask, TaskiqScheduler
    from implementations.backends.taskiq_backend.schedule import ClaimingScheduleSource

    class Recorder(InMemoryBroker):
        sent = 0
        async def kick(self, message):
            Recorder.sent += 1

    async def main():
        source = ClaimingScheduleSource(sys.argv[1], prefix=sys.argv[2])
        broker = Recorder()
        await broker.startup()
        task = ScheduledTask(task_name="t", labels={}, args=[], kwargs={}, schedule_id="s1", cron="* * * * *")
        # Three scheduler loops see the same due schedule: TaskiqScheduler.on_ready is what each one calls.
        errors = []
        for _ in range(3):
            try:
                await TaskiqScheduler(broker, [source]).on_ready(source, task)
            except BaseException as exc:
                errors.append(type(exc).__name__)
        print(json.dumps({"sent": Recorder.sent, "errors": errors}))

    asyncio.run(main())
""")


def test_of_three_scheduler_loops_exactly_one_sends_a_due_retry_and_the_others_stand_down_quietly(
        backend_envs: dict[str, BackendEnv], redis_url: str) -> None:
    # Given three scheduler loops reading the same schedule source on a live Redis
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    prefix = f"claim-{uuid.uuid4().hex}"  # this test's own keys on the shared server
    done = subprocess.run([str(backend_envs["taskiq"].python), "-c", SCRIPT, redis_url, prefix], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    # Then the schedule is sent once, and the two loops that lost the claim raise nothing out of on_ready
    # (taskiq catches its ScheduledTaskCancelledError; anything else would kill the send with a traceback)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"sent": 1, "errors": []}
