"""The history of a run: its append-only JSONL writer and reader, the streamed join, the accumulators fed
from it (checks and report figures), and the judged run handed to report handlers."""

from harness.ledger.history import FaultWindow, History, KillSwitchWindow, load_history
from harness.ledger.writer import LedgerWriter

__all__ = ["FaultWindow", "History", "KillSwitchWindow", "LedgerWriter", "load_history"]
