"""Append-only JSONL history of a run, and its reader."""

from harness.ledger.history import FaultWindow, History, KillSwitchWindow, load_history
from harness.ledger.writer import LedgerWriter

__all__ = ["FaultWindow", "History", "KillSwitchWindow", "LedgerWriter", "load_history"]
