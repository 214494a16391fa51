"""User task code: the one deliberate import of a scenario's own modules, from its allowed path only.

A scenario may name ``task = "mytasks:charge_card"`` and ``args = "mytasks:make_args"``; the exception
names of its policy and fault plan may be ``"mytasks.CardDeclined"``. Like Celery importing the task
modules its configuration names, retrybench imports those modules — and only those — and only from the
*allowed path*: the scenario file's directory, or ``retrybench run --path DIR``. The directory is never put
on ``sys.path``: a module is looked up there and nowhere else, so a name cannot reach a module that merely
happens to be importable (docs/own-tasks.md). Everything the module itself imports (httpx, …) comes from
the backend's environment and the scenario's ``requirements``.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any


class UserCodeError(ValueError):
    """A task or argument function, or an exception module, that cannot be imported from the allowed path."""


def is_ref(text: object) -> bool:
    """``"module:function"`` (the form a user task or argument generator is named in)."""
    return isinstance(text, str) and ":" in text


def split_ref(ref: str, what: str = "task") -> tuple[str, str]:
    module, _, attr = ref.partition(":")
    if not module or not attr or not all(p.isidentifier() for p in module.split(".")) or not attr.isidentifier():
        raise UserCodeError(f"{what} {ref!r}: expected 'module:function', e.g. 'mytasks:charge_card'")
    return module, attr


def task_name(ref: str) -> str:
    """The name a user task is registered under on every backend: ``mytasks.charge_card``."""
    return ref.replace(":", ".")


def _inside(file: str | None, path: str) -> bool:
    if not file:
        return False
    root = os.path.realpath(path)
    return os.path.commonpath([root, os.path.realpath(file)]) == root


def find(module: str, path: str) -> str:
    """The file ``module``'s top-level package or module would be loaded from in ``path``; UserCodeError if none.
    Nothing is executed."""
    top = module.split(".")[0]
    if not os.path.isdir(path):
        raise UserCodeError(f"module {module!r}: the allowed path {path} is not a directory")
    spec = importlib.machinery.PathFinder.find_spec(top, [path])
    if spec is None or not spec.origin:
        raise UserCodeError(f"no module {top!r} in {path} (a task module is imported only from the scenario "
                            "file's directory or --path DIR)")
    return spec.origin


def import_from(module: str, path: str) -> Any:
    """Import ``module`` whose top-level package lives in ``path``; the one import of user code."""
    top = module.split(".")[0]
    find(module, path)
    loaded = sys.modules.get(top)
    if loaded is not None and not _inside(getattr(loaded, "__file__", None), path):
        raise UserCodeError(f"module {top!r} is already imported from {getattr(loaded, '__file__', '?')}, not "
                            f"from {path}: rename the task module")
    if loaded is None:
        spec = importlib.machinery.PathFinder.find_spec(top, [path])
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[top] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            sys.modules.pop(top, None)
            raise
    # Submodules resolve through the package's own __path__, which lies inside ``path``.
    return importlib.import_module(module)


_LOADED: dict[tuple[str, str], Callable[..., Any]] = {}


def load_function(ref: str, path: str, what: str = "task") -> Callable[..., Any]:
    """The function ``ref`` names, imported from ``path``; UserCodeError with one clear line otherwise.
    Found once per process: an argument generator is looked up for every job, inside the measured window."""
    found = _LOADED.get((ref, path))
    if found is not None:
        return found
    module, attr = split_ref(ref, what)
    try:
        mod = import_from(module, path)
    except UserCodeError as exc:
        raise UserCodeError(f"{what} {ref!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed to import: say why, in one line
        hint = " (add it to the scenario's requirements file)" if isinstance(exc, ModuleNotFoundError) else ""
        raise UserCodeError(f"{what} {ref!r}: importing {module} failed: {type(exc).__name__}: {exc}{hint}") from None
    fn = getattr(mod, attr, None)
    if fn is None:
        raise UserCodeError(f"{what} {ref!r}: module {module} ({getattr(mod, '__file__', '?')}) has no "
                            f"function {attr!r}")
    if not callable(fn):
        raise UserCodeError(f"{what} {ref!r}: {attr} is a {type(fn).__name__}, not a function")
    _LOADED[(ref, path)] = fn
    return fn  # type: ignore[no-any-return]


def exception_modules(names: Iterable[str], path: str) -> list[str]:
    """The modules of dotted exception ``names`` whose top-level package lies in ``path`` (to import)."""
    out = []
    for name in names:
        if not isinstance(name, str) or "." not in name or hasattr(builtins, name):
            continue
        module = name.rpartition(".")[0]
        if module and all(p.isidentifier() for p in module.split(".")):
            top = module.split(".")[0]
            if importlib.machinery.PathFinder.find_spec(top, [path]) is not None and module not in out:
                out.append(module)
    return out


def import_exception_modules(names: Iterable[str], path: str) -> None:
    """Import the allowed path's modules that ``names`` (policy and fault-plan exception names) live in, so
    that ``resolve_exception`` finds them among the loaded modules."""
    for module in exception_modules(names, path):
        try:
            import_from(module, path)
        except UserCodeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise UserCodeError(f"exception module {module}: import failed: {type(exc).__name__}: {exc}") from None


def exception_names(policy: dict[str, Any] | None, faults: Iterable[dict[str, Any]] | None) -> list[str]:
    """Every exception name a policy and a fault plan mention."""
    names: list[str] = []
    for key in ("autoretry_for", "dont_autoretry_for"):
        value = (policy or {}).get(key)
        names.extend([value] if isinstance(value, str) else [v for v in value or () if isinstance(v, str)])
    names.extend(str(f["exc"]) for f in faults or () if isinstance(f, dict) and isinstance(f.get("exc"), str))
    return names


def normalize_args(value: Any, where: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """One job's arguments as a scenario or an argument generator gives them: a list (positional), a table
    (keywords), ``{"args": [...], "kwargs": {...}}``, or a single value (one positional argument)."""
    if isinstance(value, (list, tuple)):
        return tuple(value), {}
    if isinstance(value, dict):
        if set(value) <= {"args", "kwargs"} and value:
            args, kwargs = value.get("args", ()), value.get("kwargs", {})
            if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
                raise UserCodeError(f"{where}: 'args' must be a list and 'kwargs' a table, got {value!r}")
            return tuple(args), dict(kwargs)
        return (), dict(value)
    return (value,), {}
