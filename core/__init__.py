"""driftline core: errors, data sources, the profile kernel and sketches, engines, result records
and model loading. It imports nothing from checks/, skew/, explain/, retrain/ or monitor/."""
