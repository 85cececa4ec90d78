"""driftline skew package."""
