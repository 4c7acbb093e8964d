"""The registry's drills: which scenarios exercise which approved path (`harness policy show`) and the
outage matrix written as runnable scenarios (`harness scaffold`)."""
