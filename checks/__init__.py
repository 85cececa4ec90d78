"""driftline checks package."""
