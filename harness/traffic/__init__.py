"""Traffic drivers: send the scenario's mix through the gateway under test."""
