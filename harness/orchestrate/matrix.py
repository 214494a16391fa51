"""``retrybench matrix``: one library, several of its releases, each pinned in its own environment.

The matrix is an ordinary run whose backends are pinned labels of one library (``arq==0.25.0``,
``arq==0.26.1``), so every check, verdict and report applies unchanged; ``harness.between`` adds the
"Between versions" section. ``--last N`` reads the library's release list from PyPI's JSON API.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from rich.console import Console
from rich.markup import escape

from harness.analysis.between import between_lines, regressions
from implementations.backends import QUEUES, REGISTRY

PYPI_JSON = "https://pypi.org/pypi"  # $RETRYBENCH_PYPI_JSON: a mirror's JSON API instead
DEFAULT_REPETITIONS = 3
TIMEOUT_S = 20.0

Releases = Mapping[str, list[Mapping[str, Any]]]  # PyPI's "releases": version → its files
Fetch = Callable[[str], Releases]
Run = Callable[[argparse.Namespace, Console], tuple[int, "dict[str, Any] | None"]]  # cli's run: code, results


class MatrixError(ValueError):
    """Bad matrix input, or a release list that cannot be had: one line, exit 2."""


@dataclass(frozen=True)
class MatrixPlan:
    """Which library and which of its releases, oldest first, each as a pinned backend label."""

    backend: str
    versions: tuple[str, ...]

    @property
    def labels(self) -> list[str]:
        return [f"{self.backend}=={v}" for v in self.versions]


def distribution(backend: str) -> str:
    """The PyPI project of a backend (``celery[redis]`` → ``celery``); MatrixError for the control or an unknown."""
    found = REGISTRY.get(backend.strip().lower())
    if found is None:
        raise MatrixError(f"matrix: unknown backend {backend!r}: choose from {', '.join(QUEUES)}")
    if found.distribution is None:
        raise MatrixError(f"matrix: {found.name} is the in-process control, with no releases to compare: "
                          f"choose a library ({', '.join(QUEUES)})")
    return found.distribution.split("[")[0]


def pypi_releases(project: str, *, base: str | None = None, timeout: float = TIMEOUT_S) -> Releases:
    """``{version: [file, ...]}`` from PyPI's JSON API; MatrixError (one line) when offline or unknown."""
    base = base or os.environ.get("RETRYBENCH_PYPI_JSON") or PYPI_JSON
    url = f"{base.rstrip('/')}/{project}/json"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a fixed https URL
            data = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise MatrixError(f"matrix: {url}: no project {project!r} there") from None
        raise MatrixError(f"matrix: cannot list the releases of {project} ({url}: HTTP {exc.code}); "
                          "give them with --versions") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise MatrixError(f"matrix: cannot list the releases of {project} ({url}: {reason}); offline? "
                          "give them with --versions") from None
    releases = data.get("releases") if isinstance(data, dict) else None
    if not isinstance(releases, dict):
        raise MatrixError(f"matrix: {url}: no release list in the answer")
    return releases


def _installable(files: Iterable[Mapping[str, Any]], python: Version) -> bool:
    """A release with at least one file that is not yanked and whose Requires-Python admits ``python``."""
    for f in files:
        if f.get("yanked"):
            continue
        try:
            if python in SpecifierSet(f.get("requires_python") or ""):
                return True
        except InvalidSpecifier:
            return True  # a malformed Requires-Python is pip's to judge, not ours
    return False


def newest_finals(releases: Releases, n: int, *, python: str | None = None) -> list[str]:
    """The newest ``n`` final releases (no pre-, dev- or yanked releases, none this Python cannot install),
    oldest first, ordered by PEP 440 — not by upload date or by string."""
    here = Version(python or ".".join(map(str, sys.version_info[:3])))
    found = []
    for text, files in releases.items():
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if not version.is_prerelease and _installable(files, here):
            found.append(version)
    return [str(v) for v in sorted(found)[-n:]] if n > 0 else []


def parse_versions(text: str) -> tuple[str, ...]:
    """``"0.26.3, 0.25.0"`` → ``("0.25.0", "0.26.3")``: PEP 440 versions, oldest first, no repeats."""
    items = [t.strip().removeprefix("==") for t in text.split(",")]
    if not all(items):
        raise MatrixError(f"--versions {text!r}: expected comma-separated versions, e.g. 0.25.0,0.26.3")
    parsed: dict[Version, str] = {}
    for item in items:
        try:
            version = Version(item)
        except InvalidVersion:
            raise MatrixError(f"--versions: {item!r} is not a PEP 440 version (e.g. 0.26.3; no wildcards: "
                              "each release is one exact pin)") from None
        if version in parsed:
            raise MatrixError(f"--versions: {item} is given twice")
        parsed[version] = item
    return tuple(parsed[v] for v in sorted(parsed))


def plan_matrix(backend: str, *, last: int | None = None, versions: str | None = None,
                fetch: Fetch | None = None, python: str | None = None) -> MatrixPlan:
    """The releases a matrix runs: ``--versions`` as given (no network), or the newest ``--last`` from the
    release list (``fetch``: PyPI unless a test injects one)."""
    if "=" in backend or "<" in backend or ">" in backend:
        raise MatrixError(f"matrix -b {backend!r}: name the library alone and its releases with --versions or --last")
    project = distribution(backend)
    name = backend.strip().lower()
    if (last is None) == (versions is None):
        raise MatrixError("matrix: give either --last N or --versions V1,V2,...")
    if versions is not None:
        chosen = parse_versions(versions)
    else:
        assert last is not None
        if last < 2:
            raise MatrixError(f"--last must be >= 2 (a matrix compares releases), got {last}")
        chosen = tuple(newest_finals((fetch or pypi_releases)(project), last, python=python))
        if not chosen:
            raise MatrixError(f"matrix: {project} has no final release this Python can install")
    if len(chosen) < 2:
        raise MatrixError(f"matrix: {len(chosen)} release of {project} found ({', '.join(chosen)}): "
                          "a matrix needs at least two")
    return MatrixPlan(name, chosen)


def add_matrix_options(p: argparse.ArgumentParser) -> None:
    """The options ``matrix`` has besides the run options it shares with ``run``."""
    p.add_argument("--backend", "-b", required=True, metavar="NAME",
                   help=f"the library whose releases to compare: {', '.join(QUEUES)}")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--last", type=int, metavar="N", help="the newest N final releases on PyPI")
    which.add_argument("--versions", metavar="V1,V2,...", help="these releases, e.g. 0.25.0,0.26.3 (no network)")
    p.add_argument("--repetitions", type=int, default=DEFAULT_REPETITIONS, metavar="R",
                   help=f"run every cell R times (default {DEFAULT_REPETITIONS}; Welch's test needs >= 2)")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 when a metric is worse in a release than in the one before, beyond noise and chance "
                        "(Welch's test, Holm's correction over all the tests)")


def run_matrix(args: argparse.Namespace, console: Console, *, run: Run) -> int:
    """``run`` on several releases of one library, each pinned; exit 1 on a significant regression when
    ``--fail-on-regression`` (else run's own exit code). MatrixError for bad input."""
    matrix = plan_matrix(args.backend, last=args.last, versions=args.versions)
    if args.repetitions < 1:
        raise MatrixError(f"--repetitions must be >= 1, got {args.repetitions}")
    if args.fail_on_regression and args.repetitions < 2:
        raise MatrixError("--fail-on-regression needs --repetitions 2 or more: with one run per release Welch's "
                          "test cannot tell a regression from noise")
    args.backend, args.repeat = matrix.labels, args.repetitions
    console.print(f"matrix: {matrix.backend} {', '.join(matrix.versions)}, {args.repetitions} repetition(s) each")
    code, results = run(args, console)
    if results is None:
        return code
    found = regressions(results.get("between_versions"))
    for line in found:
        console.print(f"[bold red]REGRESSION[/] {escape(line)}")
    if not found:
        console.print("[green]no significant regression between consecutive releases[/]")
    return code or (1 if args.fail_on_regression and found else 0)


def print_between(results: Mapping[str, Any], console: Console) -> None:
    """The "Between versions" section on the terminal, when the run holds two releases of one library."""
    if lines := between_lines(results.get("between_versions")):
        console.print("[bold]Between versions[/] (Welch's t-test over the repetitions, p < 0.05; a regression "
                      "also holds after Holm's correction)")
        for line in lines:
            console.print(escape(line))
