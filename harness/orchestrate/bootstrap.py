"""Create the main environment (``.venv``) with nothing but a system Python ≥ 3.10, then run a command in it.

``python3 harness/orchestrate/bootstrap.py bench [ARGS…]`` runs ``retrybench run ARGS…`` (README's first command);
``… test [PYTEST ARGS…]`` runs the import-layer contracts and the whole test suite (the second, and ``.ci/run``);
with no command it only sets up. ``make bench`` / ``make test`` call the same. Standard library only, so it runs
before anything is installed. On Debian/Ubuntu ``python3 -m venv`` needs the ``python3-venv`` package; as root we
install it with apt-get, otherwise we say how.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
MARKER = VENV / ".retrybench-bootstrap"


def fail(message: str) -> None:
    print(f"retrybench: error: {message}", file=sys.stderr)
    sys.exit(2)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)  # type: ignore[call-overload, no-any-return]


def install_venv_package() -> None:
    """Debian splits ensurepip out of Python: fetch python3.X-venv when we may."""
    apt = shutil.which("apt-get") or ""
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    pkg = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
    if not (apt and is_root):
        fail(f"`{sys.executable} -m venv` does not work here; install it with `sudo apt-get install {pkg}` "
             "(or python3-venv) and run the command again")
    print(f"retrybench: installing {pkg} with apt-get (needed for virtual environments)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "install", "-y", "-qq", pkg], [apt, "install", "-y", "-qq", "python3-venv"]):
        if run(cmd, env=env).returncode == 0:
            return
        run([apt, "update", "-qq"], env=env)
        if run(cmd, env=env).returncode == 0:
            return
    fail(f"could not install {pkg} with apt-get; install it by hand and run the command again")


def setup() -> None:
    if sys.version_info < (3, 10):  # noqa: UP036 - this file runs under whatever python3 the user has
        fail(f"Python >= 3.10 is needed, this is {sys.version.split()[0]} ({sys.executable}); "
             "run it with python3.X")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()
    if MARKER.exists() and MARKER.read_text() == digest:
        return
    if run([sys.executable, "-c", "import ensurepip, venv"]).returncode != 0:
        install_venv_package()
    shutil.rmtree(VENV, ignore_errors=True)
    print("retrybench: creating .venv (first run only)", file=sys.stderr)
    made = run([sys.executable, "-m", "venv", str(VENV)])
    if made.returncode != 0:
        install_venv_package()
        shutil.rmtree(VENV, ignore_errors=True)
        made = run([sys.executable, "-m", "venv", str(VENV)])
        if made.returncode != 0:
            fail(f"cannot create a virtual environment: {made.stderr.strip().splitlines()[-1:]}")
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # A new venv's pip (23.x) backtracks for minutes on these pins: upgrade it first.
    for cmd in (pip + ["-U", "pip"], pip + ["-e", f"{ROOT}[dev]"]):
        done = run(cmd)
        if done.returncode != 0:
            fail("installing the main environment failed: " + " | ".join(done.stderr.strip().splitlines()[-3:]))
    MARKER.write_text(digest)


def main(argv: list[str]) -> None:
    setup()
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    bin_dir = VENV / "bin"
    os.chdir(ROOT)
    if command == "bench":
        os.execv(str(bin_dir / "retrybench"), [str(bin_dir / "retrybench"), "run", *rest])
    elif command == "test":
        # Four test processes, one module each at a time (a module's shared cell runs once): the suite mostly
        # waits on workers, timers and retries, so four take ~10 minutes on 2 cores where two took ~16.
        if run([str(bin_dir / "lint-imports"), "--no-cache"]).returncode != 0:
            subprocess.call([str(bin_dir / "lint-imports"), "--no-cache"])
            sys.exit(1)
        python = str(bin_dir / "python")
        os.execv(python, [python, "-m", "pytest", "-n", "4", "--dist", "loadscope", *rest])
    elif command:
        fail(f"unknown command {command!r}: bench [ARGS…], test [PYTEST ARGS…], or nothing (set up only)")


if __name__ == "__main__":
    main(sys.argv[1:])
