"""Backend environments: spec parsing, slugs, markers, reuse; one real env build (integration)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import harness.orchestrate.envs as envs
from harness.orchestrate.envs import (
    MARKER,
    BackendEnv,
    EnvError,
    EnvSpec,
    ensure_env,
    ensure_envs,
    env_hash,
    parse_backend_spec,
    python_version,
    read_marker,
    requirements_for,
)
from implementations.backends import QUEUES


@pytest.mark.parametrize(("text", "backend", "pin"), [
    ("rq", "rq", None),
    ("arq", "arq", None),
    ("celery", "celery", None),
    ("Celery", "celery", None),
    ("celery==5.6.*", "celery", "==5.6.*"),
    ("arq==0.26.1", "arq", "==0.26.1"),
    (" rq == 2.6.0 ", "rq", "==2.6.0"),
    ("celery>=5.4,<5.6", "celery", "<5.6,>=5.4"),
])
def test_parse_good_specs(text: str, backend: str, pin: str | None) -> None:
    assert parse_backend_spec(text) == EnvSpec(backend, pin)


def test_parse_without_packaging_uses_the_regex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "packaging.specifiers", None)  # import now raises ImportError
    assert parse_backend_spec("celery == 5.6.*") == EnvSpec("celery", "==5.6.*")
    assert parse_backend_spec("celery>=5.4, <5.6").pin == ">=5.4,<5.6"
    with pytest.raises(EnvError, match="bad version specifier"):
        parse_backend_spec("celery=5.6")


@pytest.mark.parametrize("text", ["nosuchqueue", "beanstalkd==2.0", "", "==5.6", "rq-scheduler"])
def test_parse_unknown_backend(text: str) -> None:
    with pytest.raises(EnvError, match=r"unknown backend .*choose from reference, rq, arq, celery"):
        parse_backend_spec(text)


@pytest.mark.parametrize("text", ["celery=5.6", "rq==", "rq>>1", "arq 0.26", "celery==5.6.*,"])
def test_parse_bad_specifier(text: str) -> None:
    with pytest.raises(EnvError, match="bad version specifier"):
        parse_backend_spec(text)


def test_reference_needs_no_env(tmp_path: Path) -> None:
    spec = parse_backend_spec("reference")
    assert not spec.needs_env
    env = ensure_env(spec, root=tmp_path)
    assert env.python == Path(sys.executable) and env.versions["python"].endswith(
        ".".join(map(str, sys.version_info[:3])))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(EnvError, match="no versions to pin"):
        parse_backend_spec("reference==1.0")


@pytest.mark.parametrize(("text", "slug", "requirement"), [
    ("rq", "rq", "rq"),
    ("celery", "celery", "celery[redis]"),
    ("celery==5.6.*", "celery-5.6.x", "celery[redis]==5.6.*"),
    ("arq==0.26.1", "arq-0.26.1", "arq==0.26.1"),
    ("celery>=5.4,<5.6", "celery-lt5.6-ge5.4", "celery[redis]<5.6,>=5.4"),
    ("rq!=2.0.0", "rq-ne2.0.0", "rq!=2.0.0"),
])
def test_slug_and_requirement(text: str, slug: str, requirement: str) -> None:
    spec = parse_backend_spec(text)
    assert spec.slug == slug and re.fullmatch(r"[A-Za-z0-9._+-]+", spec.slug)
    assert spec.requirement == requirement
    assert str(spec) == spec.backend + (spec.pin or "")


def test_requirements_for_lock_file_and_pin(tmp_path: Path) -> None:
    (tmp_path / "rq.txt").write_text("# header\nrq==3.0.0\nredis==8.1.0\n")
    assert requirements_for(EnvSpec("rq"), lock_dir=tmp_path).endswith("redis==8.1.0\n")
    # A pin replaces the lock file, not what the harness's own worker code imports.
    assert requirements_for(EnvSpec("rq", "==2.6.0"), lock_dir=tmp_path).splitlines() == [
        "rq==2.6.0", "pybreaker>=1.4", "orjson>=3.10"]
    with pytest.raises(EnvError, match="cannot read the lock file for arq"):
        requirements_for(EnvSpec("arq"), lock_dir=tmp_path)


@pytest.mark.parametrize("backend", list(QUEUES))
def test_lock_files_pin_everything_exactly(backend: str) -> None:
    text = (envs.LOCK_DIR / f"{backend}.txt").read_text()
    assert text.startswith("#") and "Regenerate" in text
    pins = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    for line in pins:
        assert re.fullmatch(r'[A-Za-z0-9_.-]+==[A-Za-z0-9.+]+(; python_version < "3\.\d+")?', line), line
    names = {ln.split("==")[0].lower() for ln in pins}
    assert {backend, "redis"} <= names and not names & {"pip", "setuptools", "wheel", "retrybench"}


def test_arq_and_celery_locks_need_different_redis() -> None:
    # The reason for separate envs: arq pins redis<6, kombu 5.7 needs redis>=6.4.
    def redis_major(backend: str) -> int:
        text = (envs.LOCK_DIR / f"{backend}.txt").read_text()
        return int(re.search(r"^redis==(\d+)", text, re.M).group(1))  # type: ignore[union-attr]
    assert redis_major("arq") < 6 <= redis_major("celery")


def test_env_hash_changes_with_every_input() -> None:
    base = env_hash("rq==3.0.0\n", "CPython-3.11.7", None)
    assert base == env_hash("rq==3.0.0\n", "CPython-3.11.7", None)
    assert base == env_hash("# new header\n\nrq==3.0.0\n", "CPython-3.11.7", None)  # comments don't count
    assert len({base, env_hash("rq==3.0.1\n", "CPython-3.11.7", None),
                env_hash("rq==3.0.0\n", "CPython-3.12.1", None),
                env_hash("rq==3.0.0\n", "CPython-3.11.7", "==3.0.0")}) == 4


def _fake_env(path: Path, digest: str, versions: dict[str, str] | None = None) -> None:
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").write_text("")
    marker = {"hash": digest, "versions": versions or {"rq": "3.0.0"}}
    (path / MARKER).write_text(json.dumps(marker))


def test_read_marker(tmp_path: Path) -> None:
    _fake_env(tmp_path / "rq", "abc")
    assert read_marker(tmp_path / "rq", "abc") == {"hash": "abc", "versions": {"rq": "3.0.0"}}
    assert read_marker(tmp_path / "rq", "other") is None
    assert read_marker(tmp_path / "missing", "abc") is None
    (tmp_path / "rq" / "bin" / "python").unlink()  # interpreter gone: the env is not reusable
    assert read_marker(tmp_path / "rq", "abc") is None
    (tmp_path / "rq" / MARKER).write_text("{not json")
    assert read_marker(tmp_path / "rq", "abc") is None


def _digest(spec: EnvSpec) -> str:
    return env_hash(requirements_for(spec), python_version(sys.executable), spec.pin)


def test_matching_marker_is_reused_without_any_subprocess(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    spec = EnvSpec("rq")
    _fake_env(tmp_path / "rq", _digest(spec), {"rq": "3.0.0", "redis": "8.1.0"})

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the fast path must not start a process")
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(subprocess, "run", forbidden)
    env = ensure_env(spec, root=tmp_path)
    assert env == BackendEnv(spec, tmp_path / "rq", tmp_path / "rq" / "bin" / "python",
                             {"rq": "3.0.0", "redis": "8.1.0"})
    assert env.environ()["PYTHONPATH"].split(":")[0] == str(envs.REPO)
    assert env.environ()["PATH"].startswith(str(tmp_path / "rq" / "bin"))


def test_stale_marker_recreates_once_under_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = EnvSpec("rq")
    _fake_env(tmp_path / "rq", "stale-hash")
    calls: list[str] = []

    def fake_create(spec: EnvSpec, path: Path, python: str, requirements: str, digest: str,
                    **kwargs: Any) -> dict[str, object]:
        calls.append(str(spec))
        time.sleep(0.2)  # the second thread is now waiting on the lock
        (path / MARKER).write_text(json.dumps({"hash": digest, "versions": {"rq": "3.0.0"}}))
        return {"hash": digest, "versions": {"rq": "3.0.0"}}
    monkeypatch.setattr(envs, "_create", fake_create)
    results: list[BackendEnv] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_env(spec, root=tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["rq"] and len(results) == 2 and results[0] == results[1]


def test_ensure_envs_reports_every_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(spec: EnvSpec, **kwargs: Any) -> BackendEnv:
        if spec.pin:
            raise EnvError(f"cannot install {spec}: boom")
        return BackendEnv(spec, tmp_path, tmp_path / "bin" / "python")
    monkeypatch.setattr(envs, "ensure_env", fake)
    ok = ensure_envs([EnvSpec("rq"), EnvSpec("arq")], root=tmp_path)
    assert [e.spec.backend for e in ok] == ["rq", "arq"]
    with pytest.raises(EnvError, match=r"cannot install rq==9: boom; cannot install arq==9: boom"):
        ensure_envs([EnvSpec("rq", "==9"), EnvSpec("celery"), EnvSpec("arq", "==9")], root=tmp_path)


@pytest.mark.integration
def test_real_rq_env_is_created_then_reused(tmp_path: Path) -> None:
    lines: list[str] = []
    env = ensure_env(parse_backend_spec("rq"), root=tmp_path, log=lines.append)
    assert env.path == tmp_path / "rq" and env.python.exists()
    assert any("creating the rq environment" in ln for ln in lines)
    lock = (envs.LOCK_DIR / "rq.txt").read_text()
    assert f"rq=={env.versions['rq']}\n" in lock and f"redis=={env.versions['redis']}\n" in lock
    done = subprocess.run([str(env.python), "-I", "-c", "import rq, redis; print(rq.__version__)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == env.versions["rq"]
    # Only the backend's dependencies: the project itself is not installed there.
    assert "retrybench" not in json.loads((env.path / MARKER).read_text())["resolved"]
    started = time.monotonic()
    again = ensure_env(parse_backend_spec("rq"), root=tmp_path, log=lines.append)
    assert again == env and time.monotonic() - started < 0.5


@pytest.mark.integration
def test_uninstallable_pin_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EnvError) as caught:
        ensure_env(parse_backend_spec("celery==99.*"), root=tmp_path, log=lambda line: None)
    message = str(caught.value)
    assert message.startswith("cannot install celery==99.*: ")
    assert "celery==99.*" in message.split(": ", 1)[1] and "\n" not in message
    assert not (tmp_path / "celery-99.x").exists()  # the half-built env is gone
