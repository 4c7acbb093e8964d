"""Scenario files: YAML -> strict typed model, with every problem located by file:line."""

from harness.scenario.loader import (
    LoadedScenario,
    json_schema,
    load_scenario,
    redacted_dump,
    scenario_from_dict,
)

__all__ = ["LoadedScenario", "json_schema", "load_scenario", "redacted_dump", "scenario_from_dict"]
