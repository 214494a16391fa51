"""What a worker process needs to rebuild the same app: one JSON-serialisable record."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

ENV_VAR = "RETRYBENCH_CONFIG"
SCHEDULES = ("planned", "native")  # who decides each retry's delay: retrybench's plan, or the library itself


@dataclass
class AppConfig:
    """Everything that makes one run's app: backend, servers, run identity, faults and scenario."""

    backend: str = "reference"
    label: str = ""  # how results name this backend, e.g. "celery==5.6.*"; defaults to backend
    redis_url: str | None = None
    broker_url: str | None = None  # Celery only; defaults to redis_url
    cell_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    prefix: str = ""
    seed: int = 0
    faults: list[dict[str, Any]] = field(default_factory=list)
    time_scale: float = 1.0
    failure_log: str | None = None
    events_file: str | None = None  # workers on this host append history events here (else: a Redis stream)
    scenario: str = ""
    task: str = ""  # scenario apps: a built-in task body, or a user task "module:function"
    user_path: str = ""  # the one directory a user task's modules are imported from (implementations.api.usercode)
    # Where the scenario's requirements are installed for this backend (envs.ensure_user_requirements): what a
    # process that rebuilds the app later (failed-jobs requeue, a supervisor) needs for the task's own imports.
    user_site: str = ""
    policy: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)  # e.g. time_limit
    options: dict[str, Any] = field(default_factory=dict)  # backend tuning (worker class, poll delay…)
    app_path: str = "implementations.api.tasks:build_app"
    t0_ns: int = 0  # the run's first enqueue; outage windows are measured from it
    # "planned": retrybench's seeded plan sets every retry delay; "native": each library computes its own
    # from the policy written as its users would write it (docs/schedules.md).
    schedule: str = "planned"

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.backend
        if not self.prefix:
            self.prefix = f"retrybench:{self.cell_id}"
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def reached_at(self, redis_url: str, broker_url: str | None = None) -> AppConfig:
        """The same app seen from another host: the run's Redis under the address that works from here
        (and the broker too, when it was that Redis or when ``broker_url`` names it)."""
        from dataclasses import replace

        same_broker = self.broker_url in (None, self.redis_url)
        return replace(self, redis_url=redis_url,
                       broker_url=broker_url or (redis_url if same_broker else self.broker_url))

    def portable(self) -> AppConfig:
        """The same app without this host's paths (failure log, event file, log folder), for workers
        started anywhere else or later: they record through Redis instead. Without credentials too: this
        copy is stored in Redis; whoever uses it gives the URL that works from there (``reached_at``)."""
        from dataclasses import replace

        from implementations.core.redact import strip_url

        options = {**self.options, "log_dir": None}
        if options.get("alert_webhook"):
            options["alert_webhook"] = "env"  # a webhook URL holds its token: whoever rebuilds the app has it there
        return replace(self, failure_log=None, events_file=None, options=options,
                       redis_url=strip_url(self.redis_url), broker_url=strip_url(self.broker_url))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AppConfig:
        return cls(**json.loads(text))

    @classmethod
    def from_env(cls) -> AppConfig:
        text = os.environ.get(ENV_VAR)
        if not text:
            raise RuntimeError(f"{ENV_VAR} is not set: worker processes are started by retrybench")
        return cls.from_json(text)
