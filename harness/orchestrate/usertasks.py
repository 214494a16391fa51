"""A scenario's own task, before a run starts: its requirements installed in each backend's environment, and
its modules checked to import there from the path the user allowed."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.orchestrate.envs import BackendEnv, EnvError, ensure_user_requirements
from implementations.backends.base import SOURCE_ROOT

if TYPE_CHECKING:
    from harness.orchestrate.runner import RunPlan


def prepare_user_tasks(plan: RunPlan, envs: dict[str, BackendEnv], *, root: Path,
                       log: Callable[[str], None]) -> tuple[dict[tuple[str, str], str], dict[str, Any]]:
    """For every scenario that runs a task of the user's own, on every backend: install its requirements
    (cached by the file's hash, envs.ensure_user_requirements) and check, in that backend's interpreter, that
    its task and argument functions and exception modules import from the allowed path (harness.bench.usercheck).
    Returns the folder each (backend, scenario) cell puts on its PYTHONPATH (or "") and what the results'
    environment records; EnvError, one line, before any Redis or worker is started."""
    import tempfile

    sites: dict[tuple[str, str], str] = {}
    record: dict[str, Any] = {}
    for s in plan.scenarios:
        if not s.user_task:
            continue
        entry: dict[str, Any] = {"task": s.task, "path": s.path, "args": s.args if isinstance(s.args, str) else
                                 (f"list of {len(s.args)}" if isinstance(s.args, list) else "job index")}
        if s.requirements:
            entry["requirements"] = {"file": s.requirements, "installed": {}}
        for b in plan.backends:
            env = envs[str(b)]
            site = ""
            if s.requirements:
                deps = ensure_user_requirements(env, Path(s.requirements), root=root, log=log)
                entry["requirements"]["sha256"] = deps.sha256
                entry["requirements"]["installed"][str(b)] = deps.installed
                site = str(deps.site)
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
                json.dump({"scenario": s.to_dict(), "backend": b.backend}, fh)
            try:
                done = subprocess_run([str(env.python), "-m", "harness.bench.usercheck", fh.name], site)
            finally:
                os.unlink(fh.name)
            if done.returncode != 0:
                line = (done.stdout.strip().splitlines() or done.stderr.strip().splitlines() or ["failed"])[-1]
                raise EnvError(f"scenario {s.name}: {line} (in the {b} environment, {env.python})")
            sites[(str(b), s.name)] = site
        record[s.name] = entry
    return sites, record


def subprocess_run(cmd: list[str], site: str) -> Any:
    import subprocess

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE_ROOT, site, env.get("PYTHONPATH", "")]))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                          check=False)
