"""One virtualenv per backend, built from a lock file (or a user's pin) and reused while unchanged.

The backends cannot share an environment: arq >= 0.26 pins ``redis<6`` while kombu 5.7 (Celery 5.7)
needs ``redis>=6.4``. Each env holds only the backend's dependencies; the project itself is never
installed there (workers run with PYTHONPATH pointing at the source tree), and the main environment
never imports celery, rq or arq.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from implementations.backends import QUEUES, REGISTRY, is_in_process

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / ".venvs"
LOCK_DIR = REPO / "requirements"
BACKENDS = QUEUES  # the backends that need an environment (implementations.backends.REGISTRY)
MARKER = "retrybench-env.json"
MARKER_FORMAT = 1
# What implementations/ imports besides the backend (the lock files pin the same): a pinned env without
# them could not start a worker.
WORKER_DEPS = ("pybreaker>=1.4", "orjson>=3.10")
_SPEC_RE = re.compile(r"^\s*(~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9][A-Za-z0-9.*+!_-]*\s*$")
_SPEC_NAMES = {"~=": "compat", "===": "eq", "==": "", "!=": "ne", "<=": "le", ">=": "ge", "<": "lt", ">": "gt"}

Log = Callable[[str], None]


class EnvError(RuntimeError):
    """A backend environment that cannot be named, created or installed."""


@dataclass(frozen=True)
class EnvSpec:
    """Which backend, and optionally which versions of it (a PEP 440 specifier such as ``==5.6.*``)."""

    backend: str
    pin: str | None = None

    def __str__(self) -> str:
        return self.backend + (self.pin or "")

    @property
    def needs_env(self) -> bool:
        return not is_in_process(self.backend)

    @property
    def slug(self) -> str:
        """Directory name: ``rq``, ``celery-5.6.x``, ``arq-0.26.1``, ``celery-ge5.4-lt5.6``."""
        if not self.pin:
            return self.backend
        parts = []
        for clause in self.pin.split(","):
            m = re.match(r"\s*(~=|===|==|!=|<=|>=|<|>)\s*(.*?)\s*$", clause)
            op, version = (m.group(1), m.group(2)) if m else ("", clause)
            parts.append(_SPEC_NAMES.get(op, "") + version.replace("*", "x"))
        return "-".join([self.backend, *(re.sub(r"[^A-Za-z0-9._+-]", "_", p) for p in parts)])

    @property
    def requirement(self) -> str:
        return str(REGISTRY[self.backend].distribution) + (self.pin or "")


def parse_backend_spec(text: str) -> EnvSpec:
    """``"rq"``, ``"celery==5.6.*"``, ``"arq==0.26.1"`` or ``"reference"`` → EnvSpec."""
    m = re.match(r"^\s*([A-Za-z][A-Za-z0-9_.-]*)\s*(.*?)\s*$", text)
    backend = m.group(1).lower() if m else ""
    if backend not in REGISTRY:
        raise EnvError(f"unknown backend {text!r}: choose from {', '.join(REGISTRY)}"
                       " (optionally with a version, e.g. celery==5.6.*)")
    rest = m.group(2) if m else ""
    if not rest:
        return EnvSpec(backend)
    if is_in_process(backend):
        raise EnvError(f"{text!r}: the {backend} backend runs in-process and has no versions to pin")
    return EnvSpec(backend, _normalise_specifier(text, rest))


def _normalise_specifier(text: str, spec: str) -> str:
    problem = f"bad version specifier in {text!r}: expected PEP 440, e.g. ==5.6.* or >=5.4,<5.6"
    clauses = [c.strip() for c in spec.split(",")]
    if not all(clauses):  # packaging accepts "==5.6.*," but a stray comma is more likely a typo
        raise EnvError(problem)
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
    except ImportError:  # packaging is optional in the main environment
        if not all(_SPEC_RE.match(c) for c in clauses):
            raise EnvError(problem) from None
        return ",".join(re.sub(r"\s+", "", c) for c in clauses)
    try:
        parsed = SpecifierSet(spec)
    except InvalidSpecifier:
        raise EnvError(problem) from None
    if not len(parsed):
        raise EnvError(problem)
    return ",".join(sorted(str(s) for s in parsed))


@dataclass
class BackendEnv:
    """A ready environment: its interpreter and the versions installed in it."""

    spec: EnvSpec
    path: Path
    python: Path
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def bin_dir(self) -> Path:
        return self.python.parent

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a worker or driver: this env's bin/ first, the source tree on PYTHONPATH."""
        env = dict(os.environ)
        path = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
        if self.spec.needs_env:
            env["VIRTUAL_ENV"] = str(self.path)
            env["PATH"] = os.pathsep.join([str(self.bin_dir), env.get("PATH", "")])
        env.update(extra or {})
        return env


def requirements_for(spec: EnvSpec, *, lock_dir: Path = LOCK_DIR) -> str:
    """The requirements text an env is built from: the lock file, or the pinned requirement."""
    if spec.pin:
        # The worker side of the harness runs in this env too: what it imports besides the backend.
        return "\n".join([spec.requirement, *WORKER_DEPS]) + "\n"
    lock = lock_dir / f"{spec.backend}.txt"
    try:
        return lock.read_text()
    except OSError as e:
        raise EnvError(f"cannot read the lock file for {spec.backend}: {e}") from None


def env_hash(requirements: str, python_version: str, pin: str | None) -> str:
    """What makes an env reusable: same requirements, same interpreter version, same pin."""
    # Comments and blank lines do not change what gets installed: editing them must not rebuild.
    lines = [ln.strip() for ln in requirements.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    key = json.dumps([MARKER_FORMAT, lines, python_version, pin or ""])
    return hashlib.sha256(key.encode()).hexdigest()


def read_marker(path: Path, digest: str) -> dict[str, object] | None:
    """The env's marker when it matches ``digest`` and its interpreter still exists, else None."""
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("hash") != digest:
        return None
    return marker if _env_python(path).exists() else None


@functools.cache
def python_version(python: str) -> str:
    """``CPython-3.11.7`` for ``python``; no subprocess when it is the running interpreter."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        return f"{platform.python_implementation()}-{platform.python_version()}"
    code = "import platform; print(platform.python_implementation() + '-' + platform.python_version())"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EnvError(f"cannot run {python}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def _env_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env(spec: EnvSpec, *, root: Path = DEFAULT_ROOT, python: str = sys.executable,
               quiet: bool = True, log: Log | None = None) -> BackendEnv:
    """Create (or reuse) ``root/<slug>`` for ``spec`` and return it; EnvError if it cannot be built."""
    if not spec.needs_env:
        return BackendEnv(spec, Path(sys.prefix), Path(sys.executable),
                          {"python": python_version(sys.executable)})
    requirements = requirements_for(spec)
    digest = env_hash(requirements, python_version(python), spec.pin)
    path = Path(root) / spec.slug
    marker = read_marker(path, digest)  # fast path: no lock, no subprocess
    if marker is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Two runs may start at once: the second waits here, then finds the first one's marker.
        with open(path.parent / f".{spec.slug}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            marker = read_marker(path, digest) or _create(spec, path, python, requirements, digest,
                                                        quiet=quiet, log=log)
    versions = marker.get("versions")
    return BackendEnv(spec, path, _env_python(path), dict(versions) if isinstance(versions, dict) else {})


def _create(spec: EnvSpec, path: Path, python: str, requirements: str, digest: str, *,
            quiet: bool, log: Log | None) -> dict[str, object]:
    say = log or _stderr
    started = time.monotonic()
    say(f"retrybench: creating the {spec} environment in {path}")
    shutil.rmtree(path, ignore_errors=True)
    env_python = _env_python(path)
    pip = [str(env_python), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    if quiet:
        pip.append("-q")
    try:
        _run([python, "-m", "venv", str(path)], what=f"create a venv for {spec}", quiet=quiet, log=say)
        # A new venv's pip (23.2 on Debian 12) backtracks for minutes on celery's deps: upgrade it first.
        _run([*pip, "install", "--upgrade", "pip"], what=f"upgrade pip for {spec}", quiet=quiet, log=say)
        (path / "requirements.txt").write_text(requirements)
        # Not --no-deps: pip still adds a dependency that only another Python version needs.
        _run([*pip, "install", "-r", str(path / "requirements.txt")], what=f"install {spec}",
             quiet=quiet, log=say)
        resolved = json.loads(_run([str(env_python), "-I", "-c", _FREEZE], what=f"inspect {spec}",
                                   quiet=True, log=say))
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # a half-built env must not look usable
        raise
    versions = {name: resolved[name] for name in REGISTRY[spec.backend].recorded if name in resolved}
    versions["python"] = python_version(python)
    marker: dict[str, object] = {
        "hash": digest, "spec": str(spec), "requirements": requirements, "versions": versions,
        "resolved": resolved, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.monotonic() - started, 1)}
    tmp = path / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path / MARKER)  # the marker appears last and whole: it means "env complete"
    say(f"retrybench: {spec} environment ready in {marker['seconds']}s ({_fmt(versions)})")
    return marker


_FREEZE = """
import importlib.metadata as m, json
skip = {"pip", "setuptools", "wheel"}
print(json.dumps({d.metadata["Name"].lower(): d.version for d in m.distributions()
                  if d.metadata["Name"] and d.metadata["Name"].lower() not in skip}, sort_keys=True))
"""


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")  # one write, so lines from parallel creations do not interleave


def _fmt(versions: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def _run(cmd: list[str], *, what: str, quiet: bool, log: Log) -> str:
    # Keep only the tail of pip's output: the error that matters is at the end.
    tail: deque[str] = deque(maxlen=400)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PIP_REQUIRE_VIRTUALENV": "0"})
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.append(line.rstrip("\n"))
        if not quiet:
            log(line.rstrip("\n"))
    if proc.wait() != 0:
        raise EnvError(f"cannot {what}: {_pip_error(list(tail))}")
    return "\n".join(tail)


def _pip_error(lines: list[str]) -> str:
    useful = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("WARNING: Location")]
    errors = [ln for ln in useful if ln.startswith("ERROR:")]
    return " | ".join((errors or useful)[-4:]) or "no output"


def ensure_envs(specs: Iterable[EnvSpec], *, root: Path = DEFAULT_ROOT, parallel: bool = True,
                python: str = sys.executable, quiet: bool = True, log: Log | None = None) -> list[BackendEnv]:
    """``ensure_env`` for several specs at once (in threads); one EnvError naming every failure."""
    specs = list(specs)

    def one(spec: EnvSpec) -> BackendEnv | EnvError:
        try:
            return ensure_env(spec, root=root, python=python, quiet=quiet, log=log)
        except EnvError as e:
            return e

    if parallel and len(specs) > 1:
        with ThreadPoolExecutor(max_workers=len(specs)) as pool:
            results = list(pool.map(one, specs))
    else:
        results = [one(s) for s in specs]
    failures = [str(r) for r in results if isinstance(r, EnvError)]
    if failures:
        raise EnvError("; ".join(failures))
    return [r for r in results if isinstance(r, BackendEnv)]


# -- a user task's requirements (docs/own-tasks.md) ----------------------------------------------------
USER_DIR = "user"  # under the envs root: one folder per (backend env, requirements file hash)


@dataclass
class UserDeps:
    """A user task's requirements installed for one backend env: the folder on its PYTHONPATH and what it holds."""

    path: Path
    sha256: str
    installed: dict[str, str] = field(default_factory=dict)

    @property
    def site(self) -> Path:
        return self.path / "site"


def requirements_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_user_requirements(env: BackendEnv, requirements: Path, *, root: Path = DEFAULT_ROOT,
                             quiet: bool = True, log: Log | None = None) -> UserDeps:
    """Install ``requirements`` for ``env`` into ``root/user/<slug>-<hash>`` (``pip install --target``), cached by
    the file's hash beside the backend's pins and constrained by the versions the env already holds, so the
    backend's pins never move. The env itself is not changed: the folder goes on the cell's PYTHONPATH.
    EnvError (one line) when a requirement does not install."""
    try:
        text = requirements.read_text()
    except OSError as exc:
        raise EnvError(f"cannot read requirements {requirements}: {exc}") from None
    digest = requirements_digest(text)
    slug = env.spec.slug if env.spec.needs_env else "reference"
    path = Path(root) / USER_DIR / f"{slug}-{digest[:16]}"
    marker = path / MARKER
    found = _user_marker(marker, digest)
    if found is not None:
        return UserDeps(path, digest, found)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _user_marker(marker, digest)
        if found is not None:
            return UserDeps(path, digest, found)
        say = log or _stderr
        say(f"retrybench: installing {requirements.name} for {env.spec} into {path}")
        shutil.rmtree(path, ignore_errors=True)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            resolved = json.loads(_run([str(env.python), "-I", "-c", _FREEZE], what=f"inspect {env.spec}",
                                       quiet=True, log=say))
            (tmp / "constraints.txt").write_text("".join(f"{k}=={v}\n" for k, v in sorted(resolved.items())))
            (tmp / "requirements.txt").write_text(text)
            pip = [str(env.python), "-m", "pip", "--disable-pip-version-check", "--no-input",
                   *(["-q"] if quiet else [])]
            _run([*pip, "install", "--target", str(tmp / "site"), "-r", str(tmp / "requirements.txt"),
                  "-c", str(tmp / "constraints.txt")],
                 what=f"install {requirements} for {env.spec} (its own pins held fixed)", quiet=quiet, log=say)
            installed = _installed_in(tmp / "site")
            (tmp / MARKER).write_text(json.dumps({"hash": digest, "requirements": text, "installed": installed,
                                                  "backend": str(env.spec)}, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return UserDeps(path, digest, installed)


def _user_marker(marker: Path, digest: str) -> dict[str, str] | None:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("hash") != digest:
        return None
    installed = data.get("installed")
    return dict(installed) if isinstance(installed, dict) else {}


def _installed_in(site: Path) -> dict[str, str]:
    """``{name: version}`` of the distributions pip put in ``site`` (their .dist-info folders)."""
    out: dict[str, str] = {}
    for info in sorted(site.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        out[name.lower().replace("_", "-")] = version
    return out
