"""driftline bench package."""
