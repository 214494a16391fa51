"""ListRedisScheduleSource, safe with one scheduler loop per worker process.

taskiq expects exactly one ``taskiq scheduler`` process: two loops reading the same source both send a due
schedule. Every retrybench worker runs a loop (the supervisor then restarts the scheduler with the worker), so
``pre_send`` (the source's documented veto, ``ScheduledTaskCancelledError``) lets only the loop that claims the
schedule first send it. The claim expires: a loop that dies between claim and send leaves the schedule to a loop
that has not tried it yet (a restarted worker's).
"""

from __future__ import annotations

from redis.asyncio import Redis
from taskiq import ScheduledTask
from taskiq.exceptions import ScheduledTaskCancelledError
from taskiq_redis import ListRedisScheduleSource

CLAIM_TTL_S = 30


class ClaimingScheduleSource(ListRedisScheduleSource):
    async def pre_send(self, task: ScheduledTask) -> None:
        async with Redis(connection_pool=self._connection_pool) as redis:
            claimed = await redis.set(f"{self._prefix}:claim:{task.schedule_id}", 1, nx=True, ex=CLAIM_TTL_S)
        if not claimed:
            # No arguments: taskiq's errors take their message from a template (a positional argument is a
            # TypeError, which TaskiqScheduler.on_ready does not catch: the send task would die with a traceback).
            raise ScheduledTaskCancelledError

    def data_key(self, schedule_id: str) -> str:
        return self._get_data_key(schedule_id)
