"""driftline retrain package."""
