"""Typed model, ledger events, errors and the check registry: imports nothing of the project."""
