"""Orchestration: runs a scenario end to end. Front ends import its submodules directly,
so that `python -m harness.engine.serve` (the child processes) stays light."""
