"""Fault injectors (the nemesis): resolve a fault's targets, inject it, undo it."""
