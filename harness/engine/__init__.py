"""Orchestration: runs a scenario end to end. Front ends import its submodules directly,
so that the child processes (`python -m harness.serve`) stay light."""
