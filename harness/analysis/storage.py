"""Results directories: versioned ``results.json`` with environment metadata, and the ``latest`` pointer."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RESULTS = "results.json"
HISTORY = "history.jsonl"


def history_file(run_dir: Path) -> Path:
    """``history.jsonl``, or its gzipped form (how committed example runs are stored)."""
    plain = run_dir / HISTORY
    packed = run_dir / (HISTORY + ".gz")
    return packed if not plain.exists() and packed.exists() else plain


class ResultsError(ValueError):
    """A results directory or file that cannot be read."""


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(*, root: Path, command: list[str], redis: dict[str, Any],
                backends: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Everything needed to judge whether two runs are comparable (pyperf's metadata)."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "hostname": platform.node(),
        "git_commit": git_commit(root),
        "command": command,
        "redis": redis,
        "backends": backends,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv0": sys.argv[0],
    }


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    # Write-then-rename: a crash mid-write never leaves a half results.json behind.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def point_latest(out: Path, run_dir: Path) -> None:
    link = out / "latest"
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(run_dir.name)
    except OSError:
        (out / "LATEST").write_text(run_dir.name + "\n")


def read_results(path: Path) -> dict[str, Any]:
    """``results.json`` (or a directory holding one), checked for shape and schema version."""
    if path.is_dir():
        path = path / RESULTS
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}); "
                           f"`retrybench report {path.parent}` rebuilds it from history.jsonl") from None
    if not isinstance(data, dict) or "schema_version" not in data or "cells" not in data:
        raise ResultsError(f"{path}: not a retrybench results file (no schema_version/cells)")
    if data["schema_version"] != SCHEMA_VERSION:
        raise ResultsError(f"{path}: schema_version {data['schema_version']!r} is not supported "
                           f"(this retrybench reads {SCHEMA_VERSION})")
    check_shape(data, str(path))
    return data


def check_shape(data: dict[str, Any], where: str) -> None:
    """The types every reader of a results file relies on; a file that breaks them is one clear error, not a
    traceback (and not exit 1, which ``compare`` keeps for "threshold crossed")."""
    def bad(what: str, expected: str, value: Any) -> ResultsError:
        return ResultsError(f"{where}: {what} must be {expected}, got {type(value).__name__} {str(value)[:60]!r}")

    cells = data.get("cells")
    if not isinstance(cells, list):
        raise bad("cells", "a list", cells)
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise bad(f"cells[{i}]", "an object", cell)
        for key in ("scenario", "backend"):
            if not isinstance(cell.get(key), str):
                raise bad(f"cells[{i}].{key}", "a string", cell.get(key))
        for key in ("summary", "metrics", "checks"):
            if key in cell and cell[key] is not None and not isinstance(cell[key], dict):
                raise bad(f"cells[{i}].{key}", "an object", cell[key])
    for key in ("aggregates", "environment"):
        if key in data and not isinstance(data[key], dict):
            raise bad(key, "an object", data[key])
    for name, rows in (data.get("aggregates") or {}).items():
        if not isinstance(rows, dict) or not all(isinstance(r, dict) for r in rows.values()):
            raise bad(f"aggregates[{name!r}]", "an object of objects", rows)
