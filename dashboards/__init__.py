"""driftline dashboards package."""
