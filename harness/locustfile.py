"""The locust entry: the scenario's traffic mix as locust users (harness.loadgen.users).

    harness load scenarios/x.yaml --users 50 --run-time 60           # the governed path
    locust -f harness/locustfile.py --harness-scenario scenarios/x.yaml --host http://...
    harness worker --master HOST:PORT                                 # a remote worker of `harness load`

Loaded only by locust, in its own processes (it monkey-patches with gevent): under `harness load` it
reads the private config the engine wrote (harness.loadgen.LoadConfig) and hands the users a writer
of the run's ledger (one O_APPEND write per event, so worker processes on this machine append
directly). Under `harness load --workers-expected N` the master sends remote workers that config and
writes the observations they ship (harness.loadgen.remote); a worker started with neither a config
nor a scenario is such a remote worker. Plain locust use reads the scenario file and records nothing.
Faults and checks stay in the harness process.
"""

from __future__ import annotations

import os
import time
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from harness.core.errors import HarnessError
from harness.ledger import LedgerWriter
from harness.loadgen import CONFIG_ENV, LoadConfig
from harness.loadgen.channel import Channel, worker_token
from harness.loadgen.remote import MasterHub, WorkerShipper
from harness.loadgen.users import HarnessUser, State, Switch
from harness.scenario import load_scenario

__all__ = ["HarnessUser"]  # the user class locust finds in this file


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--harness-scenario", default=None, env_var="LOCUST_HARNESS_SCENARIO",
                        help="scenario file whose traffic mix the users send (plain locust use)")
    parser.add_argument("--harness-user-rate", type=float, default=1.0, env_var="LOCUST_HARNESS_USER_RATE",
                        help="requests per second per user (0: no wait); default 1")
    parser.add_argument("--harness-seed", type=int, default=None, help="override the scenario's seed")


@events.init.add_listener
def _init(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    private = os.environ.get(CONFIG_ENV)
    runner = environment.runner
    if private:
        config = LoadConfig.read(private)
        if config.workers_path is not None:  # the master of remote workers: it records what they ship
            if not isinstance(runner, MasterRunner) or not config.ledger_path:
                raise SystemExit("harness locustfile: a config for remote workers is for a locust master with a ledger")
            MasterHub(environment, config, Channel(_token()), LedgerWriter(config.ledger_path))
            State.config = config  # for the start marker; the master itself sends nothing
            return
    elif options is not None and options.harness_scenario:
        scenario = load_scenario(options.harness_scenario).scenario
        config = LoadConfig(traffic=scenario.traffic, seed=scenario.seed if options.harness_seed is None
                            else options.harness_seed, served_target=scenario.gateway.served_target,
                            client_key=scenario.gateway.client_key, user_rate=options.harness_user_rate)
    elif isinstance(runner, WorkerRunner):  # a remote worker of `harness load`: the master sends the config
        WorkerShipper(environment, Channel(_token()))
        return
    else:
        raise SystemExit(f"harness locustfile: pass --harness-scenario FILE (or set {CONFIG_ENV})")
    State.config = config
    State.switch = Switch(config.switch_path) if config.switch_path else None
    ledger = config.ledger_path
    State.open_sink = (lambda: LedgerWriter(ledger)) if ledger else None
    HarnessUser.network_timeout = HarnessUser.connection_timeout = config.traffic.timeout_s


def _token() -> str:
    try:
        return worker_token()
    except HarnessError as exc:
        raise SystemExit(f"harness: {exc}") from None


@events.test_start.add_listener
def _started(environment: Environment, **_kwargs: Any) -> None:
    config = State.config
    if config and config.started_path and not isinstance(environment.runner, WorkerRunner):
        with open(config.started_path, "w", encoding="utf-8") as handle:
            handle.write(f"{time.time()}\n")
