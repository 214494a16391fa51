"""Item 8: every connection error a broker restart raises is a disconnect to the driver, on every backend."""

from __future__ import annotations

import redis

from harness.bench.cell import is_disconnect


def _named(module: str, name: str, base: type[BaseException] = Exception) -> type[BaseException]:
    return type(name, (base,), {"__module__": module})


def test_what_a_restart_raises_is_a_disconnect() -> None:
    kombu_error = _named("kombu.exceptions", "OperationalError")
    for exc in [redis.exceptions.ConnectionError("reset"), redis.exceptions.TimeoutError("t"),
                redis.exceptions.WatchError("Watched variable changed."), redis.exceptions.BusyLoadingError("LOADING"),
                ConnectionResetError(104, "reset"), BrokenPipeError(), kombu_error("Error 111 connecting"),
                _named("amqp.exceptions", "RecoverableConnectionError")("x")]:
        assert is_disconnect(exc), exc


def test_a_wrapped_connection_error_is_a_disconnect() -> None:
    try:
        try:
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        except redis.exceptions.ConnectionError as inner:
            raise RuntimeError("enqueue failed") from inner
    except RuntimeError as outer:
        assert is_disconnect(outer)


def test_other_errors_are_not() -> None:
    for exc in [ValueError("x"), TypeError("y"), _named("myapp", "OperationalError")("z"),
                redis.exceptions.ResponseError("WRONGTYPE")]:
        assert not is_disconnect(exc), exc
