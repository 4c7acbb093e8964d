"""Chaos and conformance harness for governed AI-model fallback."""

__version__ = "0.1.0"
