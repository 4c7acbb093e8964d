"""`harness`: run, load, check, report, validate, list-checks, schema, selftest, recover, setup-gateways,
policy show, lint-config, scaffold, worker.

Exit codes: 0 all pass, 1 a violation (only that), 2 bad input or usage (a malformed scenario or ledger,
an output folder that cannot be written: one message naming file, line and key), 3 unknown (nothing
proven, interrupted or incomplete), 4 the harness itself failed (a bug, or the machine refused it
something): one line naming the exception, never a verdict. `--debug` (before or after the command)
prints the traceback of such a failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from pathlib import Path

from harness.core.errors import EXIT_CRASH, EXIT_FAIL, EXIT_INPUT, EXIT_PASS, EXIT_UNKNOWN, HarnessError
from harness.core.paths import require_writable_dir
from harness.core.registry import check_names
from harness.core.safe_text import printable
from harness.core.verdict import Verdict
from harness.ledger.outcome import OutcomeHandler
from harness.reporting import Reports, Terminal, summary_of
from harness.scenario import json_schema, load_scenario, run_length

EXIT_BY_VERDICT = {Verdict.PASS: EXIT_PASS, Verdict.FAIL: EXIT_FAIL, Verdict.UNKNOWN: EXIT_UNKNOWN}


def _checks_arg(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in check_names()]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown check(s) {', '.join(unknown)}; see `harness list-checks`")
    return names


def _duration_arg(value: str) -> float:
    from harness.loadgen import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Chaos and conformance harness for governed "
                                     "AI-model fallback.")
    parser.add_argument("--debug", action="store_true", default=False, help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run scenarios end to end and judge them")
    run.add_argument("scenarios", nargs="+", type=Path)
    run.add_argument("--report-dir", type=Path, default=Path("reports"))
    run.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    run.add_argument("--checks", type=_checks_arg, default=None, help="comma-separated check names")
    run.add_argument("--format", choices=["text", "json"], default="text",
                     help="json: print the summaries as JSON (no live view)")
    run.add_argument("--dry-run", action="store_true",
                     help="resolve every selector and print the plan (the blast radius); inject nothing")
    run.add_argument("--allow-remote", action="store_true",
                     help="allow a non-loopback upstream or a remote Docker host")
    load = sub.add_parser("load", help="run a scenario's traffic mix under locust load, with its faults, and judge it")
    load.add_argument("scenario", type=Path)
    load.add_argument("--users", type=int, default=10, help="locust users (default 10)")
    load.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all at once)")
    load.add_argument("--run-time", type=_duration_arg, default=None,
                      help="90, 90s, 2m or 1h30m (default: the scenario's traffic.duration_s)")
    load.add_argument("--processes", type=int, default=0,
                      help="locust worker processes on this machine (default 0: a single locust process)")
    load.add_argument("--user-rate", type=float, default=1.0, help="requests per second per user; 0: no wait")
    load.add_argument("--report-dir", type=Path, default=Path("reports"))
    load.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    load.add_argument("--checks", type=_checks_arg, default=None, help="comma-separated check names")
    load.add_argument("--format", choices=["text", "json"], default="text",
                      help="json: print the summary as JSON (no live view)")
    load.add_argument("--allow-remote", action="store_true",
                      help="allow a non-loopback upstream or a remote Docker host")
    load.add_argument("--workers-expected", type=int, default=0, metavar="N",
                      help="run the users on N remote workers (`harness worker`), waiting for them to join; "
                      "needs HARNESS_WORKER_TOKEN")
    load.add_argument("--master-bind", default="127.0.0.1:5557", metavar="HOST:PORT",
                      help="where the locust master listens for remote workers (default 127.0.0.1:5557)")
    load.add_argument("--worker-gateway-url", default=None, metavar="URL",
                      help="the gateway's URL as remote workers reach it (default: its own URL)")
    worker = sub.add_parser("worker", help="a remote locust worker of `harness load --workers-expected N`: gets "
                            "the scenario from the master and ships its observations there")
    worker.add_argument("--master", required=True, metavar="HOST:PORT", help="the master's --master-bind address")
    worker.add_argument("--processes", type=int, default=0,
                        help="locust worker processes to fork on this machine (default 0: this one)")
    check = sub.add_parser("check", help="re-judge a saved ledger offline")
    check.add_argument("ledger", type=Path)
    check.add_argument("--checks", type=_checks_arg, default=None)
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    check.add_argument("--format", choices=["text", "json"], default="text", help="same as --json when json")
    report = sub.add_parser("report", help="rebuild a saved run's reports (report.html, summary.json, junit.xml)")
    report.add_argument("ledger", type=Path)
    report.add_argument("--out-dir", type=Path, default=None, help="default: beside the ledger")
    report.add_argument("--checks", type=_checks_arg, default=None)
    validate = sub.add_parser("validate", help="load and validate scenario files")
    validate.add_argument("scenarios", nargs="+", type=Path)
    list_checks = sub.add_parser("list-checks", help="list the registered checks")
    list_checks.add_argument("--format", choices=["text", "json"], default="text",
                             help="json: each check's description, evidences, severity and framework mapping")
    sub.add_parser("schema", help="print the JSON Schema of the scenario format")
    selftest = sub.add_parser("selftest", help="run the shipped scenarios against every reference-gateway defect")
    selftest.add_argument("--scenarios-dir", type=Path, default=Path("scenarios"))
    selftest.add_argument("--report-dir", type=Path, default=Path("reports/selftest"))
    selftest.add_argument("--defect", action="append", default=None, help="only this defect (repeatable)")
    selftest.add_argument("--jobs", type=int, default=4, help="runs at a time (default 4)")
    selftest.add_argument("--json", action="store_true", help="print the matrix as JSON")
    _governance_parsers(sub)
    sub.add_parser("recover", help="after a killed run: undo its docker faults, kill the processes it left running, "
                   "remove its containers and its working folder (keys)")
    setup = sub.add_parser("setup-gateways", help="install LiteLLM proxy / Portkey gateway for the adapters")
    # No `choices` here: argparse rejects an empty list against choices with nargs="*".
    setup.add_argument("kinds", nargs="*", help="litellm and/or portkey (default: all)")
    for command in sub.choices.values():  # `harness check --debug L` as well as `harness --debug check L`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    return parser


_DEBUG_HELP = "when the harness itself fails (exit 4), print the traceback"
REGISTRY = Path("policy/fallback-registry.yaml")


def _governance_parsers(sub: argparse._SubParsersAction) -> None:
    """The registry's commands: `policy show`, `lint-config`, `scaffold` (none starts anything)."""
    policy = sub.add_parser("policy", help="the approved-fallback registry")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    show = policy_sub.add_parser("show", help="print the registry: routes, targets, approvals, expiry, the drills "
                                 "of each route (and routes no scenario drills)")
    show.add_argument("registry", type=Path, nargs="?", default=REGISTRY)
    show.add_argument("--scenarios-dir", type=Path, default=Path("scenarios"),
                      help="where to look for the scenarios that drill each route (default scenarios)")
    show.add_argument("--format", choices=["text", "json"], default="text")
    show.add_argument("--as-of", type=_date_arg, default=None, help="judge expiry as of this day (default today)")
    lint = sub.add_parser("lint-config", help="check gateway configurations against the registry (static; "
                          "starts nothing, no network)")
    lint.add_argument("configs", nargs="+", type=Path)
    lint.add_argument("--registry", type=Path, default=REGISTRY)
    lint.add_argument("--kind", choices=["auto", "litellm", "portkey", "reference"], default="auto")
    lint.add_argument("--scenarios-dir", type=Path, default=Path("scenarios"),
                      help="scenarios that run these configs: their topology and the drills that demonstrate "
                      "each finding (default scenarios)")
    lint.add_argument("--scenario", type=Path, action="append", default=None,
                      help="the scenario whose topology a config runs in (repeatable; default: found in "
                      "--scenarios-dir)")
    lint.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    lint.add_argument("--output", type=Path, default=None, help="write the report here instead of stdout")
    lint.add_argument("--as-of", type=_date_arg, default=None, help="judge expiry as of this day (default today)")
    scaffold = sub.add_parser("scaffold", help="write runnable scenarios covering the registry's outage matrix")
    scaffold.add_argument("--registry", type=Path, default=REGISTRY)
    scaffold.add_argument("--out", type=Path, required=True, help="folder to write the scenarios into")
    scaffold.add_argument("--gateway-config", type=Path, default=None,
                          help="drill this gateway configuration instead of the reference gateway")
    scaffold.add_argument("--routes", type=_names_arg, default=None, help="comma-separated routes (default all)")
    scaffold.add_argument("--effects", type=_names_arg, default=None,
                          help="comma-separated failure families (default all; see --help of docs/scaffold.md)")
    scaffold.add_argument("--max", type=int, default=None, help="at most this many scenarios")
    scaffold.add_argument("--seed", type=int, default=1)
    scaffold.add_argument("--force", action="store_true", help="overwrite files already in --out")


def _names_arg(value: str) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()]


def _date_arg(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a day (YYYY-MM-DD)") from None


def _cmd_policy(args: argparse.Namespace) -> int:
    from harness.drills.show import command

    return command(args)


def _cmd_lint_config(args: argparse.Namespace) -> int:
    from harness.lint.command import command

    return command(args)


def _cmd_scaffold(args: argparse.Namespace) -> int:
    from harness.drills.scaffold import command

    return command(args)


def _cmd_setup_gateways(args: argparse.Namespace) -> int:
    from harness.gateways.setup import setup_gateways

    setup_gateways(args.kinds or None)  # an unknown kind: HarnessError, exit 2
    return EXIT_PASS


def _handlers(args: argparse.Namespace, formats: list[str] | None = None,
              before_print: Callable[[], None] | None = None) -> list[OutcomeHandler]:
    """The reports a command writes; the terminal table too, unless JSON was asked for."""
    reports = Reports() if formats is None else Reports(formats)
    as_json = getattr(args, "json", False) or args.format == "json"
    return [reports] if as_json else [reports, Terminal(before=before_print)]


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.console import LiveView
    from harness.engine.run import run_scenario
    from harness.engine.topology import check_upstreams

    loaded = [load_scenario(p) for p in args.scenarios]  # all validated before anything starts
    if not args.dry_run:
        require_writable_dir(args.report_dir, "--report-dir")
    for scenario in loaded:
        check_upstreams(scenario.scenario, args.allow_remote)  # refused before anything starts: exit 2
    if args.dry_run:
        from harness.engine.plan import dry_run_plan

        for scenario in loaded:
            print(dry_run_plan(scenario, args.allow_remote))
        return EXIT_PASS
    verdicts, summaries = [], []
    for scenario in loaded:
        view = LiveView(scenario.scenario.traffic.duration_s) if args.format == "text" else None
        try:
            outcome = run_scenario(scenario, args.report_dir, seed=args.seed, checks=args.checks,
                                   handlers=_handlers(args, before_print=view.stop if view else None),
                                   on_run_dir=view.follow if view else None, allow_remote=args.allow_remote)
        finally:
            if view is not None:
                view.stop()
        if args.format == "text":
            print(f"  report: {outcome.run_dir}")
        summaries.append(summary_of(outcome.reports))
        verdicts.append(outcome.verdict)
    if args.format == "json":
        print(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2, default=str))
    return EXIT_BY_VERDICT[Verdict.combine(verdicts)]


def _cmd_load(args: argparse.Namespace) -> int:
    from harness.console import LiveView
    from harness.engine.load import run_load
    from harness.engine.topology import check_upstreams

    loaded = load_scenario(args.scenario)
    check_upstreams(loaded.scenario, args.allow_remote)
    require_writable_dir(args.report_dir, "--report-dir")
    view = LiveView(args.run_time or loaded.scenario.traffic.duration_s) if args.format == "text" else None
    try:
        outcome = run_load(loaded, args.report_dir, users=args.users, spawn_rate=args.spawn_rate,
                           run_time_s=args.run_time, processes=args.processes, seed=args.seed, checks=args.checks,
                           user_rate=args.user_rate, handlers=_handlers(args, before_print=view.stop if view else None),
                           on_run_dir=view.follow if view else None, allow_remote=args.allow_remote,
                           workers_expected=args.workers_expected, master_bind=args.master_bind,
                           worker_gateway_url=args.worker_gateway_url)
    finally:
        if view is not None:
            view.stop()
    if args.format == "json":
        print(json.dumps(summary_of(outcome.reports), indent=2, default=str))
    else:
        print(f"  report: {outcome.run_dir}")
    return EXIT_BY_VERDICT[outcome.verdict]


def _cmd_worker(args: argparse.Namespace) -> int:
    """Become a locust worker running the harness's locustfile (exec: locust gets the signals itself)."""
    from harness.loadgen import LOCUSTFILE, parse_host_port
    from harness.loadgen.channel import worker_token

    try:
        host, port = parse_host_port(args.master, "--master")
    except ValueError as exc:
        raise HarnessError(f"harness worker: {exc}") from None
    if args.processes < 0:
        raise HarnessError("harness worker: --processes must be >= 0")
    worker_token()  # refused here, before locust starts, when missing or too short
    if importlib.util.find_spec("locust") is None:  # found without importing it (gevent)
        raise HarnessError("harness worker: locust is not installed\n  hint: pip install -e '.[load]'")
    root = str(Path(__file__).resolve().parents[1])  # the harness, even when not installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
           "PYTHONUNBUFFERED": "1"}
    # Failed requests are observations, not a failure of the worker: its exit code says whether it ran.
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", host,
            "--master-port", str(port), "--exit-code-on-error", "0"]
    argv += ["--processes", str(args.processes)] if args.processes else []
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)
    return EXIT_CRASH  # not reached: execve replaces this process or raises


def _cmd_check(args: argparse.Namespace) -> int:
    from harness.engine.judge import judge_ledger

    # Streamed end to end: the checks and the summary's figures in one pass, in flat memory.
    judged = judge_ledger(args.ledger, args.checks, _handlers(args, formats=[]))
    if args.json or args.format == "json":
        print(json.dumps(summary_of(judged.reports), indent=2, default=str))
    return EXIT_BY_VERDICT[judged.verdict]


def _cmd_recover(_args: argparse.Namespace) -> int:
    from harness.faults.recover import recover

    healed = recover(print)
    print(f"recover: {healed} fault(s) undone")
    return EXIT_PASS


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.engine.judge import judge_ledger

    if args.out_dir is not None:
        require_writable_dir(args.out_dir, "--out-dir")
    else:  # beside the ledger: its folder must take the reports
        require_writable_dir(args.ledger.parent, "the ledger's folder (no --out-dir)")
    reports = Reports(out_dir=args.out_dir)
    judge_ledger(args.ledger, args.checks, [reports])
    print((args.out_dir or args.ledger.parent) / "report.html")
    return EXIT_PASS


def _cmd_validate(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from harness.core.approval import approval_notes

    failed = False
    for path in args.scenarios:
        try:
            loaded = load_scenario(path)
        except HarnessError as exc:
            print(exc, file=sys.stderr)
            failed = True
            continue
        s = loaded.scenario
        length = run_length(s)
        print(f"ok  {path}: {s.name} ({len(s.providers)} providers, {len(s.faults)} faults, "
              f"{len(s.check_names())} checks; planned {length.planned_s:g} s, at most {length.at_most_s:g} s)")
        # Approval problems are warnings, not input errors: the scenario runs, and approved_targets fails a
        # fallback to an expired or incomplete approval (as of the run's day), naming the date.
        for note in approval_notes(s.policy, datetime.now(UTC).date(), Path(path).parent):
            print(printable(f"    warning: {note.where or path}: {note.message}", one_line=True))
    return EXIT_INPUT if failed else EXIT_PASS


def _cmd_list_checks(args: argparse.Namespace) -> int:
    from harness.core.registry import describe

    checks = describe()
    if args.format == "json":
        print(json.dumps(checks, indent=2))
        return EXIT_PASS
    width = max(map(len, checks), default=10)
    for name, c in checks.items():
        print(f"{name:<{width}}  {c['severity']:<8}  {c['description']}  [evidences: {', '.join(c['evidences'])}]")
    return EXIT_PASS


def _cmd_selftest(args: argparse.Namespace) -> int:
    from harness.selftest import selftest

    require_writable_dir(args.report_dir, "--report-dir")
    log = (lambda _m: None) if args.json else print
    rows = selftest(args.scenarios_dir, args.report_dir, args.defect, args.jobs, log=log)
    bad = [r for r in rows if not r.ok]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(f"\nselftest: {len(rows) - len(bad)}/{len(rows)} as expected")
    return EXIT_FAIL if bad or not rows else EXIT_PASS


COMMANDS = {"run": _cmd_run, "load": _cmd_load, "check": _cmd_check, "report": _cmd_report, "validate": _cmd_validate,
            "list-checks": _cmd_list_checks,
            "schema": lambda _a: print(json.dumps(json_schema(), indent=2)) or EXIT_PASS, "selftest": _cmd_selftest,
            "setup-gateways": _cmd_setup_gateways, "recover": _cmd_recover, "policy": _cmd_policy,
            "lint-config": _cmd_lint_config, "scaffold": _cmd_scaffold, "worker": _cmd_worker}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except HarnessError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_UNKNOWN
    except BrokenPipeError:
        # The reader went away (`harness check ... | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PASS
    except Exception as exc:  # noqa: BLE001  # RecursionError, MemoryError, OSError, a bug: never a verdict
        return _crashed(exc, args.debug)


def _crashed(exc: BaseException, debug: bool) -> int:
    """The harness itself failed: one line (exit 4), or the traceback with --debug. Exit 1 would read as
    "a violation was found", 2 as "your input is wrong": neither is known."""
    if debug:
        sys.stderr.write(printable("".join(traceback.format_exception(exc))))  # the message is anyone's text
    message = printable(str(exc), one_line=True)
    if len(message) > 300:
        message = message[:300] + " ..."
    print(f"error: the harness itself failed: {type(exc).__name__}: {message} (exit {EXIT_CRASH}; "
          f"--debug shows the traceback)", file=sys.stderr)
    return EXIT_CRASH


def entry() -> None:
    """The `harness` console script: `main`, then exit with its code. Once the verdict is settled a late
    Ctrl-C or SIGTERM (while the interpreter winds down) must not turn it into 130 / -15."""
    code = main()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    entry()
