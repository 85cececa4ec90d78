"""driftline explain package."""
