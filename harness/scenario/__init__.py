"""Scenario files: YAML -> strict typed model, with every problem located by file:line."""

from harness.scenario.bounds import RunLength, run_length
from harness.scenario.loader import (
    LoadedScenario,
    json_schema,
    load_scenario,
    redacted_dump,
    scenario_from_dict,
)

__all__ = ["LoadedScenario", "RunLength", "json_schema", "load_scenario", "redacted_dump", "run_length",
           "scenario_from_dict"]
