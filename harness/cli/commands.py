"""The ``retrybench`` command line. Bad input: one clear line on stderr and exit code 2, no traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.analysis.compare import CompareError, Threshold, compare, environment_differences, markdown
from harness.analysis.history import HistoryError
from harness.analysis.results import analyze
from harness.analysis.storage import ResultsError, read_results
from harness.cli.parser import OPS_COMMANDS, UsageError, build_parser, plan_run
from harness.ops.commands import OpsUsageError
from harness.orchestrate.envs import EnvError, parse_backend_spec
from harness.orchestrate.matrix import MatrixError, print_between, run_matrix
from harness.orchestrate.redis_server import RedisUnavailable
from harness.orchestrate.runner import Cell, CellSetupFailed, Interrupted, RunAborted, execute
from harness.plan.presets import PRESETS
from harness.report.junit import write_junit
from harness.report.render import write_reports
from harness.report.tables import compare_table, print_results

EXIT_ABORTED = 1  # the run broke off (Redis went away): partial results are written
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _die(message: str) -> NoReturn:
    print(f"retrybench: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    return _run(args, console)[0]


def _run(args: argparse.Namespace, console: Console) -> tuple[int, dict[str, Any] | None]:
    """Run, analyse, report: the exit code, and the results (None when nothing could be analysed)."""
    plan = plan_run(args)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, transient=False)
    failures: list[str] = []
    broken: list[str] = []  # cells whose driver died or failed: the run exits 1 whatever the rest did

    def factory(cell: Cell) -> Any:
        # escape: a sweep variant's name is "name[key=value]", which rich would read as markup and drop.
        task_id = progress.add_task(escape(cell.label), total=cell.scenario.jobs, rate="")

        def update(line: dict[str, Any]) -> None:
            elapsed = line.get("elapsed") or 0
            rate = f"{line.get('attempts', 0) / elapsed:.1f} attempts/s" if elapsed else ""
            progress.update(task_id, completed=line.get("done", 0), rate=rate)
            if line.get("error"):
                failures.append(escape(f"{cell.label}: {line['error']}"))

        return update

    def done(cell: Cell, last: dict[str, Any]) -> None:
        if last.get("reason") not in (None, "complete") and not last.get("error"):
            failures.append(escape(f"{cell.label}: {last['reason']}"))
        if last.get("error"):
            broken.append(cell.label)

    run_dir: Path | None = None
    interrupted = aborted = False
    try:
        with progress:
            run_dir = execute(plan, log=lambda m: progress.console.print(f"[dim]{m}[/]"),
                              progress_factory=factory, on_cell_done=done)
    except Interrupted as exc:
        interrupted, run_dir = True, Path(str(exc))
        console.print("[yellow]interrupted: workers and Redis stopped; what was recorded is kept[/]")
    except RunAborted as exc:
        aborted, run_dir = True, Path(exc.args[0])
        print(f"retrybench: run stopped: {exc.args[1]}; the history gathered so far is in {run_dir}", file=sys.stderr)
    except (EnvError, RedisUnavailable) as exc:
        raise UsageError(str(exc)) from None
    except CellSetupFailed as exc:
        raise UsageError(f"{exc.args[1]} (logs: {Path(exc.args[0]) / 'logs'})") from None
    try:
        results = analyze(run_dir)
    except (ResultsError, HistoryError) as exc:
        console.print(f"[yellow]nothing to report: {exc}[/]")
        return (EXIT_INTERRUPTED if interrupted else EXIT_ABORTED if aborted else EXIT_USAGE), None
    print_results(results, console)
    print_between(results, console)
    for failure in failures:
        console.print(f"[red]{failure}[/]")
    console.print(f"results: {run_dir / 'results.json'}  history: {run_dir / 'history.jsonl'}")
    _write_reports(run_dir, results, console, args.junit)
    if broken and not interrupted:
        console.print(f"[bold red]{len(broken)} cell(s) broke off (driver died or failed): "
                      f"{escape(', '.join(broken))}; their rows are partial[/]")
    return (EXIT_INTERRUPTED if interrupted else EXIT_ABORTED if aborted or broken else 0), results


def cmd_matrix(args: argparse.Namespace, console: Console) -> int:
    return run_matrix(args, console, run=_run)


def _write_reports(run_dir: Path, results: dict[str, Any], console: Console, junit: Path | None = None) -> int:
    """Write report.md/html (and the JUnit file when asked); returns the number of failing JUnit cases."""
    md, html = write_reports(run_dir, results)
    console.print(f"report: {md}  {html}")
    if junit is None:
        return 0
    failing = write_junit(results, junit)
    console.print(f"junit: {junit} ({failing} failing check(s))")
    return failing


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    try:
        thresholds = [Threshold.parse(t) for t in args.fail_on]
        base, new = read_results(args.base), read_results(args.new)
        rows, failures = compare(base, new, thresholds=thresholds, fail_on_invalid=args.fail_on_invalid)
    except (CompareError, ResultsError) as exc:
        raise UsageError(str(exc)) from None
    for diff in environment_differences(base, new):
        print(f"retrybench: warning: environments differ: {diff}", file=sys.stderr)
    if args.format == "markdown":
        print(markdown(rows, only_changed=not args.all))
    else:
        console.print(compare_table(rows, only_changed=not args.all))
    for failure in failures:
        console.print(f"[bold red]FAIL[/] {failure}")
    if not failures:
        console.print(f"[green]no threshold crossed[/] ({len(rows)} comparisons)")
    return 1 if failures else 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    try:
        results = analyze(args.dir.resolve() if args.dir.is_symlink() else args.dir)
    except (ResultsError, HistoryError) as exc:
        raise UsageError(str(exc)) from None
    print_results(results, console)
    print_between(results, console)
    console.print(f"results: {args.dir / 'results.json'}")
    failing = _write_reports(args.dir, results, console, args.junit)
    return 1 if args.junit and failing else 0


def cmd_env(args: argparse.Namespace, console: Console) -> int:
    """``shell`` and ``exec``: replace this process with a command in the backend's environment."""
    import os

    from harness.orchestrate.envs import ensure_env

    argv = list(getattr(args, "argv", None) or [])
    if argv[:1] == ["--"]:
        argv = argv[1:]
    try:
        spec = parse_backend_spec(args.backend)
        env = ensure_env(spec)
    except EnvError as exc:
        raise UsageError(str(exc)) from None
    if args.command == "shell":
        argv = [str(env.python)]
    elif not argv:
        raise UsageError("exec: give a command after --, e.g. retrybench exec -b rq -- python script.py")
    elif argv[0] in ("python", "python3"):
        argv[0] = str(env.python)  # the environment's own interpreter, whatever else PATH holds
    environ = env.environ()
    environ["RETRYBENCH_BACKEND"] = spec.backend
    sys.stdout.flush()
    try:
        os.execvpe(argv[0], argv, environ)
    except OSError as exc:
        raise UsageError(f"exec: cannot run {argv[0]}: {exc.strerror}") from None
    return 0  # pragma: no cover - execvpe does not return


def cmd_scenarios(args: argparse.Namespace, console: Console) -> int:
    for name, scenario in PRESETS.items():
        console.print(f"[bold]{name}[/]: {scenario.description}")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Piped output (CI logs) would otherwise wrap tables at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    commands = {"run": cmd_run, "matrix": cmd_matrix, "report": cmd_report, "scenarios": cmd_scenarios,
                "compare": cmd_compare,
                "shell": cmd_env, "exec": cmd_env, **OPS_COMMANDS}
    try:
        sys.exit(commands[args.command](args, console))
    except (UsageError, OpsUsageError, MatrixError) as exc:
        _die(str(exc))
    except (ResultsError, HistoryError) as exc:  # a results file read where no command expected it
        _die(str(exc))
    except KeyboardInterrupt:
        print("retrybench: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
